//! `bench --profile`: the profiled pass summed per graph, per op kind and per
//! node, with each graph's achieved GFLOP/s against the core's measured peak.

use std::collections::HashMap;
use std::fmt::Write;

use edgevlm_device::runtime::profile::Profile;
use edgevlm_device::runtime::KernelRace;
use serde::Serialize;

/// Nodes listed by name (the rest are in the per-op sums).
const TOP_NODES: usize = 15;

#[derive(Serialize)]
pub struct GraphRow {
    pub graph: String,
    pub calls: u64,
    pub ms_per_call: f64,
    /// Share of the graph's time spent outside its nodes (the plan's own work).
    pub outside_nodes: f64,
    pub mfma_per_call: f64,
    pub gflops: f64,
    pub of_peak: f64,
}

#[derive(Serialize)]
pub struct OpRow {
    pub graph: String,
    pub op: String,
    pub nodes: usize,
    pub ms_per_call: f64,
    pub share: f64,
    pub gflops: f64,
}

#[derive(Serialize)]
pub struct NodeRow {
    pub graph: String,
    pub node: String,
    pub op: String,
    pub ms_per_call: f64,
    pub share: f64,
}

#[derive(Serialize)]
pub struct ProfileReport {
    pub peak_gflops: f64,
    pub peak_kernel: &'static str,
    pub graphs: Vec<GraphRow>,
    pub ops: Vec<OpRow>,
    pub nodes: Vec<NodeRow>,
    /// The swapped-in ops against tract's own, on this bundle's sizes.
    pub kernels: Vec<KernelRace>,
}

fn gflops(fma: f64, ms: f64) -> f64 {
    if ms > 0.0 {
        2.0 * fma / ms / 1e6
    } else {
        0.0
    }
}

pub fn summarise(profile: &Profile, peak: (f64, &'static str)) -> ProfileReport {
    let calls: HashMap<&str, (u64, f64)> = profile
        .graphs
        .iter()
        .map(|g| (g.graph.as_str(), (g.calls.max(1), g.in_nodes_ms)))
        .collect();
    let per_call = |graph: &str, v: f64| v / calls.get(graph).map_or(1, |c| c.0) as f64;
    let share = |graph: &str, ms: f64| ms / calls.get(graph).map_or(0.0, |c| c.1).max(1e-9);
    let graphs = profile
        .graphs
        .iter()
        .map(|g| {
            let rate = gflops(g.fma as f64, g.in_nodes_ms);
            GraphRow {
                graph: g.graph.clone(),
                calls: g.calls,
                ms_per_call: g.ms / g.calls.max(1) as f64,
                outside_nodes: 1.0 - g.in_nodes_ms / g.ms.max(1e-9),
                mfma_per_call: per_call(&g.graph, g.fma as f64) / 1e6,
                gflops: rate,
                of_peak: rate / peak.0,
            }
        })
        .collect();
    let mut by_op: HashMap<(String, String), (usize, f64, u64)> = HashMap::new();
    for n in &profile.nodes {
        let e = by_op.entry((n.graph.clone(), n.op.clone())).or_default();
        e.0 += 1;
        e.1 += n.ms;
        e.2 += n.fma;
    }
    let mut ops: Vec<OpRow> = by_op
        .into_iter()
        .map(|((graph, op), (nodes, ms, fma))| OpRow {
            ms_per_call: per_call(&graph, ms),
            share: share(&graph, ms),
            gflops: gflops(fma as f64, ms),
            graph,
            op,
            nodes,
        })
        .collect();
    ops.sort_by(|a, b| {
        a.graph
            .cmp(&b.graph)
            .then(b.ms_per_call.total_cmp(&a.ms_per_call))
    });
    let nodes = profile
        .nodes
        .iter()
        .take(TOP_NODES)
        .map(|n| NodeRow {
            graph: n.graph.clone(),
            node: n.node.clone(),
            op: n.op.clone(),
            ms_per_call: per_call(&n.graph, n.ms),
            share: share(&n.graph, n.ms),
        })
        .collect();
    ProfileReport {
        peak_gflops: peak.0,
        peak_kernel: peak.1,
        graphs,
        ops,
        nodes,
        kernels: Vec::new(),
    }
}

/// The report as Markdown tables, for `bench/README.md`.
pub fn markdown(report: &ProfileReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "core peak {:.1} GFLOP/s ({}, one thread)\n\n| graph | calls | ms/call | outside nodes | MFMA/call | GFLOP/s | of peak |\n|---|---:|---:|---:|---:|---:|---:|",
        report.peak_gflops, report.peak_kernel
    );
    for g in &report.graphs {
        let _ = writeln!(
            out,
            "| {} | {} | {:.3} | {:.1} % | {:.2} | {:.1} | {:.0} % |",
            g.graph,
            g.calls,
            g.ms_per_call,
            g.outside_nodes * 100.0,
            g.mfma_per_call,
            g.gflops,
            g.of_peak * 100.0
        );
    }
    let _ = writeln!(
        out,
        "\n| graph | op | nodes | ms/call | share | GFLOP/s |\n|---|---|---:|---:|---:|---:|"
    );
    for o in report.ops.iter().filter(|o| o.share >= 0.01) {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.3} | {:.1} % | {:.1} |",
            o.graph,
            o.op,
            o.nodes,
            o.ms_per_call,
            o.share * 100.0,
            o.gflops
        );
    }
    let _ = writeln!(
        out,
        "\n| graph | node | op | ms/call | share |\n|---|---|---|---:|---:|"
    );
    for n in &report.nodes {
        let _ = writeln!(
            out,
            "| {} | `{}` | {} | {:.3} | {:.1} % |",
            n.graph,
            n.node,
            n.op,
            n.ms_per_call,
            n.share * 100.0
        );
    }
    if !report.kernels.is_empty() {
        let _ = writeln!(
            out,
            "\n| graph | node | input | tract's op ms | swapped in ms | speed-up |\n|---|---|---|---:|---:|---:|"
        );
        let (mut tract, mut ours) = (0.0, 0.0);
        for k in &report.kernels {
            let shape: Vec<String> = k.input_shape.iter().map(usize::to_string).collect();
            let _ = writeln!(
                out,
                "| {} | `{}` | {} | {:.3} | {:.3} | {:.1}x |",
                k.graph,
                k.node,
                shape.join("×"),
                k.tract_ms,
                k.swapped_ms,
                k.tract_ms / k.swapped_ms.max(1e-9)
            );
            (tract, ours) = (tract + k.tract_ms, ours + k.swapped_ms);
        }
        let _ = writeln!(
            out,
            "| all | {} nodes | | {tract:.3} | {ours:.3} | {:.1}x |",
            report.kernels.len(),
            tract / ours.max(1e-9)
        );
    }
    out
}
