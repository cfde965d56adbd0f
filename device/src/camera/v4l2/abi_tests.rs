//! The V4L2 structures checked against the kernel headers by a C compiler for
//! the target this test binary was built for: every size, alignment, field
//! offset and field size the camera code relies on, the ioctl numbers and the
//! constants. The C file declares each value twice, once as Rust sees it and
//! once as `linux/videodev2.h` computes it (`extern char check_N[RUST];
//! extern char check_N[offsetof(...)];`), so a mismatch is a compile error
//! naming both values. Only `-fsyntax-only` runs: nothing is linked or executed,
//! which is what lets the aarch64 test binary, itself under qemu, check its own
//! layout with `aarch64-linux-gnu-gcc` (scripts/cross.sh).

use std::mem::{align_of, offset_of, size_of};
use std::process::Command;

use super::abi::*;

struct Check {
    /// What is compared, for people: `v4l2_format.fmt.pix.width offset`.
    what: String,
    /// The same value as a C constant expression.
    c: String,
    rust: u64,
}

/// `size_of` the field a projection closure points at (never called).
fn field_size<T, U>(_: fn(*const T) -> *const U) -> u64 {
    size_of::<U>() as u64
}

/// Size and alignment of a structure, then offset and size of each listed
/// field, given by its Rust path (the kernel's names, so also the C path).
macro_rules! layout {
    ($checks:ident, $c:literal, $ty:ty { $($($f:ident).+),* $(,)? }) => {{
        $checks.push(Check {
            what: format!("sizeof(struct {})", $c),
            c: format!("sizeof(struct {})", $c),
            rust: size_of::<$ty>() as u64,
        });
        $checks.push(Check {
            what: format!("_Alignof(struct {})", $c),
            c: format!("_Alignof(struct {})", $c),
            rust: align_of::<$ty>() as u64,
        });
        $(
            let path = stringify!($($f).+).replace("r#", "").replace(' ', "");
            $checks.push(Check {
                what: format!("{}.{path} offset", $c),
                c: format!("offsetof(struct {}, {path})", $c),
                rust: offset_of!($ty, $($f).+) as u64,
            });
            $checks.push(Check {
                what: format!("{}.{path} size", $c),
                c: format!("sizeof(((struct {} *)0)->{path})", $c),
                // SAFETY: only a place is named, through a pointer that is never read.
                rust: field_size(|p: *const $ty| unsafe { &raw const (*p).$($f).+ }),
            });
        )*
    }};
}

macro_rules! constants {
    ($checks:ident, $($name:ident),* $(,)?) => {
        $($checks.push(Check {
            what: stringify!($name).to_string(),
            c: stringify!($name).to_string(),
            rust: $name as u64,
        });)*
    };
}

fn checks() -> Vec<Check> {
    let mut checks = Vec::new();
    layout!(
        checks,
        "v4l2_capability",
        Capability {
            driver,
            card,
            bus_info,
            version,
            capabilities,
            device_caps,
            reserved,
        }
    );
    layout!(
        checks,
        "v4l2_pix_format",
        PixFormat {
            width,
            height,
            pixelformat,
            field,
            bytesperline,
            sizeimage,
            colorspace,
            r#priv,
            flags,
            ycbcr_enc,
            quantization,
            xfer_func,
        }
    );
    layout!(checks, "v4l2_format", Format {
        r#type, fmt, fmt.pix, fmt.raw_data, fmt.pix.width, fmt.pix.height, fmt.pix.pixelformat,
        fmt.pix.field, fmt.pix.bytesperline, fmt.pix.sizeimage,
    });
    layout!(
        checks,
        "v4l2_fract",
        Fract {
            numerator,
            denominator
        }
    );
    layout!(
        checks,
        "v4l2_captureparm",
        CaptureParm {
            capability,
            capturemode,
            timeperframe,
            extendedmode,
            readbuffers,
            reserved,
        }
    );
    layout!(checks, "v4l2_streamparm", StreamParm {
        r#type, parm, parm.capture, parm.raw_data, parm.capture.timeperframe.numerator,
        parm.capture.timeperframe.denominator,
    });
    layout!(
        checks,
        "v4l2_requestbuffers",
        RequestBuffers {
            count,
            r#type,
            memory,
            capabilities,
            flags,
            reserved,
        }
    );
    layout!(
        checks,
        "v4l2_timecode",
        Timecode {
            r#type,
            flags,
            frames,
            seconds,
            minutes,
            hours,
            userbits,
        }
    );
    layout!(checks, "v4l2_buffer", Buffer {
        index, r#type, bytesused, flags, field, timestamp, timestamp.tv_sec, timestamp.tv_usec,
        timecode, sequence, memory, m, m.offset, m.userptr, m.planes, m.fd, length, reserved2,
        request_fd,
    });
    constants!(
        checks,
        V4L2_BUF_TYPE_VIDEO_CAPTURE,
        V4L2_MEMORY_MMAP,
        V4L2_CAP_VIDEO_CAPTURE,
        V4L2_CAP_STREAMING,
        V4L2_CAP_DEVICE_CAPS,
        V4L2_BUF_FLAG_ERROR,
        V4L2_PIX_FMT_MJPEG,
        V4L2_PIX_FMT_YUYV,
        VIDIOC_QUERYCAP,
        VIDIOC_S_FMT,
        VIDIOC_REQBUFS,
        VIDIOC_QUERYBUF,
        VIDIOC_QBUF,
        VIDIOC_DQBUF,
        VIDIOC_STREAMON,
        VIDIOC_STREAMOFF,
        VIDIOC_S_PARM,
    );
    checks
}

fn c_program(checks: &[Check]) -> String {
    let mut c = String::from("#include <stddef.h>\n#include <linux/videodev2.h>\n\n");
    for (i, check) in checks.iter().enumerate() {
        c += &format!(
            "/* {} */\nextern char check_{i}[{}UL];\nextern char check_{i}[{}];\n",
            check.what, check.rust, check.c
        );
    }
    c
}

/// A C compiler whose target is this test binary's architecture, and that
/// target (`-dumpmachine`). `EDGEVLM_ABI_CC` picks one by hand.
fn compiler() -> Result<(String, String), String> {
    let arch = std::env::consts::ARCH;
    let candidates: Vec<String> = match std::env::var("EDGEVLM_ABI_CC") {
        Ok(cc) => vec![cc],
        Err(_) if arch == "aarch64" => ["aarch64-linux-gnu-gcc", "cc", "gcc", "clang"]
            .map(String::from)
            .into(),
        Err(_) => ["cc", "gcc", "clang", &format!("{arch}-linux-gnu-gcc")]
            .map(String::from)
            .into(),
    };
    for cc in &candidates {
        let Ok(out) = Command::new(cc).arg("-dumpmachine").output() else {
            continue;
        };
        let machine = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && machine.starts_with(arch) {
            return Ok((cc.clone(), machine));
        }
    }
    let install = match arch {
        "x86_64" => "gcc and linux-libc-dev".to_string(),
        "aarch64" => "gcc-aarch64-linux-gnu (on an x86 host, for the tests under qemu; \
                      it brings linux-libc-dev-arm64-cross) or, on the board, gcc and linux-libc-dev"
            .to_string(),
        other => format!("a C compiler for {other} and that target's linux-libc-dev"),
    };
    Err(format!(
        "no C compiler for {arch} found (tried {}): the V4L2 layout test compiles a C file \
         against linux/videodev2.h. Install {install} (Debian/Ubuntu: scripts/setup.sh does), \
         or set EDGEVLM_ABI_CC",
        candidates.join(", ")
    ))
}

/// Compiles the checks: `Ok` names the compiler and its target, `Err` lists
/// each value that differs or says what is missing.
fn compare(checks: &[Check]) -> Result<String, String> {
    let (cc, machine) = compiler()?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let source = dir.path().join("v4l2_layout.c");
    std::fs::write(&source, c_program(checks)).map_err(|e| e.to_string())?;
    let out = Command::new(&cc)
        .args(["-fsyntax-only", "-std=gnu11"])
        .arg(&source)
        .env("LC_ALL", "C")
        .output()
        .map_err(|e| format!("{cc}: {e}"))?;
    if out.status.success() {
        return Ok(format!("{cc} ({machine})"));
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let missing = ["No such file", "file not found", "no include path"];
    if missing.iter().any(|m| stderr.contains(m)) {
        return Err(format!(
            "{cc} ({machine}) lacks headers the V4L2 layout test needs: install linux-libc-dev \
             (for aarch64-linux-gnu-gcc: linux-libc-dev-arm64-cross; scripts/setup.sh does).\n{stderr}"
        ));
    }
    let mut report = Vec::new();
    for line in stderr.lines().filter(|l| l.contains("error")) {
        let Some(i) = number_after(line, "check_") else {
            continue;
        };
        let (Some(check), Some(kernel)) = (checks.get(i as usize), number_after(line, "char[")) else {
            continue;
        };
        report.push(format!(
            "  {}: Rust {}, videodev2.h {kernel}",
            check.what, check.rust
        ));
    }
    if report.is_empty() {
        return Err(format!(
            "the V4L2 layout check did not compile with {cc} ({machine}):\n{stderr}"
        ));
    }
    Err(format!(
        "the V4L2 structures differ from linux/videodev2.h for {machine} ({cc}):\n{}\n\n{stderr}",
        report.join("\n")
    ))
}

/// The decimal number right after the first `marker` in `line`.
fn number_after(line: &str, marker: &str) -> Option<u64> {
    let rest = &line[line.find(marker)? + marker.len()..];
    let end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

#[test]
fn layout_matches_the_kernel_headers() {
    let checks = checks();
    assert!(checks.len() > 100, "{} checks", checks.len());
    match compare(&checks) {
        Ok(cc) => eprintln!("{} V4L2 layout values agree with {cc}", checks.len()),
        Err(report) => panic!("{report}"),
    }
}

#[test]
fn a_wrong_offset_is_reported_with_both_values() {
    // The layout this file once had: `pix` right after `type`, at offset 4.
    let wrong = [Check {
        what: "v4l2_format.fmt.pix.width offset".into(),
        c: "offsetof(struct v4l2_format, fmt.pix.width)".into(),
        rust: 4,
    }];
    let report = compare(&wrong).unwrap_err();
    assert!(
        report.contains("v4l2_format.fmt.pix.width offset: Rust 4, videodev2.h 8"),
        "{report}"
    );
}

#[test]
fn ioctl_numbers_are_the_64_bit_ones() {
    // From videodev2.h on 64-bit Linux (x86_64 and aarch64 alike).
    assert_eq!(VIDIOC_QUERYCAP, 0x8068_5600);
    assert_eq!(VIDIOC_S_FMT, 0xc0d0_5605);
    assert_eq!(VIDIOC_REQBUFS, 0xc014_5608);
    assert_eq!(VIDIOC_QUERYBUF, 0xc058_5609);
    assert_eq!(VIDIOC_QBUF, 0xc058_560f);
    assert_eq!(VIDIOC_DQBUF, 0xc058_5611);
    assert_eq!(VIDIOC_STREAMON, 0x4004_5612);
    assert_eq!(VIDIOC_STREAMOFF, 0x4004_5613);
    assert_eq!(VIDIOC_S_PARM, 0xc0cc_5616);
}
