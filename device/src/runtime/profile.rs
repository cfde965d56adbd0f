//! Where a graph's time goes: every node of every graph run timed, with the
//! multiply-adds its op reports for the shapes it was given (`bench --profile`).
//!
//! Per thread and off by default: a graph run then costs one thread-local read
//! more, and a profile sees only the runs of the thread that started it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Instant;

use serde::Serialize;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::Cost;
use tract_onnx::tract_core::plan::{eval, SimpleState};

use super::Plan;

thread_local! {
    static TABLE: RefCell<Option<Table>> = const { RefCell::new(None) };
}

/// One node of one graph, summed over its runs.
#[derive(Debug, Clone, Serialize)]
pub struct NodeTime {
    pub graph: String,
    pub node: String,
    /// tract's op after optimisation (`OptMatMul`, `DepthWiseConv`, …).
    pub op: String,
    pub calls: u64,
    pub ms: f64,
    /// Multiply-adds, as the op's own cost model counts them.
    pub fma: u64,
}

/// A graph's runs: calls and wall time, nodes included or not.
#[derive(Debug, Clone, Serialize)]
pub struct GraphTime {
    pub graph: String,
    pub calls: u64,
    pub ms: f64,
    /// The part of `ms` spent in the nodes; the rest is the plan's own work
    /// (inputs checked, states made, values freed).
    pub in_nodes_ms: f64,
    pub fma: u64,
}

#[derive(Default)]
struct Table {
    nodes: HashMap<(String, usize), NodeTime>,
    graphs: HashMap<String, GraphTime>,
}

/// What one profile gathered, slowest first.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    pub graphs: Vec<GraphTime>,
    pub nodes: Vec<NodeTime>,
}

/// Starts gathering this thread's runs (an earlier table is dropped).
pub fn start() {
    TABLE.with(|t| *t.borrow_mut() = Some(Table::default()));
}

/// Stops gathering and returns what was gathered since [`start`].
pub fn finish() -> Option<Profile> {
    let table = TABLE.with(|t| t.borrow_mut().take())?;
    let mut graphs: Vec<GraphTime> = table.graphs.into_values().collect();
    graphs.sort_by(|a, b| b.ms.total_cmp(&a.ms));
    let mut nodes: Vec<NodeTime> = table.nodes.into_values().collect();
    nodes.sort_by(|a, b| b.ms.total_cmp(&a.ms));
    Some(Profile { graphs, nodes })
}

pub(super) fn active() -> bool {
    TABLE.with(|t| t.borrow().is_some())
}

/// Multiply-adds of `node` on these inputs, by the op's cost model; 0 where it
/// has none or cannot say for these shapes. A packed (exotic) input is described
/// by the model's fact, which knows its packing; a cost in the graph's symbols
/// (a text's length) is read with this run's values of them.
fn fma_of(model: &TypedModel, node: &TypedNode, inputs: &[TValue], symbols: &SymbolValues) -> u64 {
    let facts: Option<Vec<TypedFact>> = inputs
        .iter()
        .zip(&node.inputs)
        .map(|(value, outlet)| {
            if value.is_plain() {
                Some(TypedFact::shape_and_dt_of(value))
            } else {
                model.outlet_fact(*outlet).ok().cloned()
            }
        })
        .collect();
    let Some(facts) = facts else {
        return 0;
    };
    let refs: Vec<&TypedFact> = facts.iter().collect();
    let Ok(costs) = node.op.cost(&refs) else {
        return 0;
    };
    costs
        .iter()
        .filter(|(cost, _)| matches!(cost, Cost::FMA(_)))
        .filter_map(|(_, n)| n.eval(symbols).to_i64().ok())
        .map(|n| n.max(0) as u64)
        .sum()
}

/// Runs `plan` timing each node into this thread's table.
pub(super) fn run(plan: &Plan, graph: &str, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
    let start = Instant::now();
    let mut timed: Vec<(usize, String, String, f64, u64)> = Vec::new();
    // Asking the ops for their cost is the profiler's work, not the graph's.
    let mut costing_ms = 0.0;
    let mut state = SimpleState::new(plan)?;
    let out = state.run_plan_with_eval(inputs, |session, op_state, node, input| {
        let t = Instant::now();
        let fma = fma_of(plan.model(), node, &input, session.symbols);
        costing_ms += t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let out = eval(session, op_state, node, input);
        let ms = t.elapsed().as_secs_f64() * 1e3;
        timed.push((node.id, node.name.clone(), node.op.name().to_string(), ms, fma));
        out
    })?;
    let ms = start.elapsed().as_secs_f64() * 1e3 - costing_ms;
    TABLE.with(|t| {
        if let Some(table) = t.borrow_mut().as_mut() {
            table.add(graph, ms, timed);
        }
    });
    Ok(out)
}

impl Table {
    fn add(&mut self, graph: &str, ms: f64, timed: Vec<(usize, String, String, f64, u64)>) {
        let whole = self.graphs.entry(graph.to_string()).or_insert_with(|| GraphTime {
            graph: graph.to_string(),
            calls: 0,
            ms: 0.0,
            in_nodes_ms: 0.0,
            fma: 0,
        });
        whole.calls += 1;
        whole.ms += ms;
        for (id, name, op, ms, fma) in timed {
            whole.in_nodes_ms += ms;
            whole.fma += fma;
            let entry = self
                .nodes
                .entry((graph.to_string(), id))
                .or_insert_with(|| NodeTime {
                    graph: graph.to_string(),
                    node: name,
                    op,
                    calls: 0,
                    ms: 0.0,
                    fma: 0,
                });
            entry.calls += 1;
            entry.ms += ms;
            entry.fma += fma;
        }
    }
}
