//! The table, the targets, bench-results/latest.json and the SVG plot.

use crate::runner::{Config, Family, Outcome};
use plotters::prelude::*;
use serde_json::{json, Value};
use std::fmt::Write as _;

/// Facts about the machine and the run.
#[derive(Debug, Clone)]
pub struct Meta {
    pub date: String,
    pub nproc: usize,
    pub load_before: String,
    pub load_after: String,
    pub commit: String,
    pub seconds: f64,
}

fn find<'a>(o: &'a [Outcome], id: &str) -> Option<&'a Outcome> {
    o.iter().find(|x| x.id == id)
}

fn ratio(o: &[Outcome], x: &Outcome) -> Option<f64> {
    let r = find(o, x.reference?)?;
    Some(x.median()? / r.median()?)
}

fn fmt_num(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// A target: name, the figure, the bound, whether higher is better.
pub struct Target {
    pub name: &'static str,
    pub value: Option<f64>,
    pub bound: f64,
    pub at_least: bool,
}

fn ratio_of(o: &[Outcome], a: &str, b: &str, key: Option<&str>) -> Option<f64> {
    let (a, b) = (find(o, a)?, find(o, b)?);
    match key {
        None => Some(a.median()? / b.median()?),
        Some(k) => Some(a.extra_median(k)? / b.extra_median(k)?),
    }
}

pub fn targets(o: &[Outcome]) -> Vec<Target> {
    vec![
        Target {
            name: "W1 library pair / tuned Proton C pair (multi-thread, send futures)",
            value: ratio_of(o, "w1.aq-aq.mt", "w1.c-c", None),
            bound: 2.0,
            at_least: true,
        },
        Target {
            name: "W1 library pair / tuned Proton C pair (current_thread, Sink)",
            value: ratio_of(o, "w1.aq-aq.ct-sink", "w1.c-c", None),
            bound: 2.0,
            at_least: true,
        },
        Target {
            name: "W1 examples / Proton C stock examples",
            value: ratio_of(o, "w1.examples.aq", "w1.examples.c", None),
            bound: 2.0,
            at_least: true,
        },
        Target {
            name: "W2 our clients+broker / C clients+C broker",
            value: ratio_of(o, "w2.aq.aq-broker", "w2.c.c-broker", None),
            bound: 5.0,
            at_least: true,
        },
        Target {
            name: "W3 p50 / tokio ping-pong p50 (current_thread)",
            value: ratio_of(o, "w3.aq.ct", "w3.tcp", None),
            bound: 1.2,
            at_least: false,
        },
        Target {
            name: "W3 p99 / tokio ping-pong p99 (current_thread)",
            value: ratio_of(o, "w3.aq.ct", "w3.tcp", Some("p99_us")),
            bound: 1.5,
            at_least: false,
        },
        Target {
            name: "1 MiB aqueduct pair / Proton C pair",
            value: ratio_of(o, "big.aq-aq", "big.c-c", None),
            bound: 1.0,
            at_least: true,
        },
        Target {
            name: "KiB per idle connection (our listener)",
            value: find(o, "mem.aq").and_then(Outcome::median),
            bound: 16.0,
            at_least: false,
        },
    ]
}

/// The text table.
pub fn table(o: &[Outcome], cfg: &Config, meta: &Meta) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "aqueduct benchmark, {}; nproc {}; load average {} before, {} after; commit {}; {:.0} s",
        meta.date, meta.nproc, meta.load_before, meta.load_after, meta.commit, meta.seconds
    );
    let _ = writeln!(s, "{} runs per case (median; memory: at most 3), {} x {} B messages (W1/W2), credit {}; W3 {} round trips after {} warm-up; 1 MiB: {} messages, credit {}; memory: {} idle connections{}",
        cfg.runs, cfg.messages, cfg.size, cfg.credit, cfg.lat_rounds, cfg.lat_warmup, cfg.big_count, cfg.big_credit, cfg.idle_conns, if cfg.quick { " (QUICK MODE)" } else { "" });
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "| workload | case | family | median | unit | vs | ratio | other medians | runs |"
    );
    let _ = writeln!(s, "|---|---|---|---:|---|---|---:|---|---|");
    for x in o {
        let med = x.median().map(fmt_num).unwrap_or_else(|| "FAILED".into());
        let r = ratio(o, x).map(|r| format!("{r:.2}")).unwrap_or_default();
        let vs = x.reference.unwrap_or("");
        let extras: Vec<String> = x
            .extra_keys()
            .iter()
            .filter(|k| !k.starts_with("rss_before") && !k.starts_with("rss_after"))
            .filter_map(|k| Some(format!("{k} {}", fmt_num(x.extra_median(k)?))))
            .collect();
        let runs: Vec<String> = x.samples.iter().map(|v| fmt_num(v.value)).collect();
        let fails = if x.failures.is_empty() {
            String::new()
        } else {
            format!(" ({} failed)", x.failures.len())
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {}{} |",
            x.group,
            x.label,
            x.family.name(),
            med,
            x.unit,
            vs,
            r,
            extras.join(", "),
            runs.join(" "),
            fails
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "| target | figure | bound | met |");
    let _ = writeln!(s, "|---|---:|---:|---|");
    for t in targets(o) {
        let (fig, met) = match t.value {
            Some(v) => (
                format!("{v:.2}"),
                if (t.at_least && v >= t.bound) || (!t.at_least && v <= t.bound) {
                    "yes"
                } else {
                    "no"
                },
            ),
            None => ("-".into(), "not measured"),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} {} | {} |",
            t.name,
            fig,
            if t.at_least { ">=" } else { "<=" },
            t.bound,
            met
        );
    }
    let failed: Vec<&Outcome> = o.iter().filter(|x| !x.failures.is_empty()).collect();
    if !failed.is_empty() {
        let _ = writeln!(s);
        let _ = writeln!(s, "Failures:");
        for x in failed {
            for f in &x.failures {
                let _ = writeln!(s, "- {}: {}", x.id, f);
            }
        }
    }
    s
}

/// The JSON document.
pub fn json(o: &[Outcome], cfg: &Config, meta: &Meta) -> Value {
    let cases: Vec<Value> = o
        .iter()
        .map(|x| {
            let extras: serde_json::Map<String, Value> = x.extra_keys().into_iter().filter_map(|k| Some((k.clone(), json!(x.extra_median(&k)?)))).collect();
            json!({
                "id": x.id, "workload": x.group, "label": x.label, "family": x.family.name(),
                "unit": x.unit, "median": x.median(), "reference": x.reference, "ratio": ratio(o, x),
                "samples": x.samples.iter().map(|s| json!({"value": s.value, "extra": s.extra})).collect::<Vec<_>>(),
                "other_medians": extras, "failures": x.failures,
            })
        })
        .collect();
    let targets: Vec<Value> = targets(o)
        .into_iter()
        .map(|t| {
            json!({"name": t.name, "value": t.value, "bound": t.bound, "at_least": t.at_least,
            "met": t.value.map(|v| if t.at_least { v >= t.bound } else { v <= t.bound })})
        })
        .collect();
    json!({
        "date": meta.date, "nproc": meta.nproc, "load_average_before": meta.load_before,
        "load_average_after": meta.load_after, "commit": meta.commit, "duration_s": meta.seconds,
        "quick": cfg.quick, "runs": cfg.runs, "messages": cfg.messages, "message_size": cfg.size,
        "credit_window": cfg.credit, "latency_round_trips": cfg.lat_rounds, "latency_warmup": cfg.lat_warmup,
        "large_messages": cfg.big_count, "large_size": cfg.big_size, "large_credit": cfg.big_credit,
        "idle_connections": cfg.idle_conns, "cases": cases, "targets": targets,
    })
}

fn color(f: Family) -> RGBColor {
    match f {
        Family::Aqueduct => RGBColor(31, 119, 180),
        Family::ProtonC => RGBColor(214, 39, 40),
        Family::Fe2o3 => RGBColor(255, 127, 14),
        Family::Cross => RGBColor(120, 160, 200),
        Family::Floor => RGBColor(127, 127, 127),
    }
}

/// Horizontal bars, one panel per workload, coloured by family; W3 shows p99 (lighter)
/// under p50.
pub fn svg(o: &[Outcome], meta: &Meta, path: &std::path::Path) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<std::io::Error>| e.to_string();
    let font = |size| ("sans-serif", size).into_font();
    let mut groups: Vec<&str> = o.iter().map(|x| x.group).collect();
    groups.dedup();
    let rows = o.len() as u32;
    let height = 75 + groups.len() as u32 * 50 + rows * 26;
    let root = SVGBackend::new(path, (1000, height)).into_drawing_area();
    root.fill(&WHITE).map_err(e)?;
    let title = format!(
        "aqueduct vs Proton C vs fe2o3-amqp — {} — {} cores, load {} — median",
        meta.date, meta.nproc, meta.load_before
    );
    root.draw(&Text::new(title, (10, 10), font(16)))
        .map_err(e)?;
    let mut lx = 10;
    for f in [
        Family::Aqueduct,
        Family::ProtonC,
        Family::Fe2o3,
        Family::Cross,
        Family::Floor,
    ] {
        let name = match f {
            Family::Cross => "cross pair (aqueduct with a peer)",
            Family::Floor => "floor (raw TCP)",
            _ => f.name(),
        };
        root.draw(&Rectangle::new(
            [(lx, 32), (lx + 12, 44)],
            color(f).filled(),
        ))
        .map_err(e)?;
        root.draw(&Text::new(name, (lx + 16, 32), font(12)))
            .map_err(e)?;
        lx += 30 + 6 * name.len() as i32;
    }
    let mut y0 = 55i32;
    for g in groups {
        let xs: Vec<&Outcome> = o.iter().filter(|x| x.group == g).collect();
        let h = 40 + xs.len() as i32 * 26;
        let area = root.clone().shrink((0, y0), (1000, h as u32));
        let unit = xs[0].unit;
        let better = if unit.starts_with("us") || unit == "KiB" {
            "lower"
        } else {
            "higher"
        };
        let head = format!("{g} ({unit}, {better} is better)");
        area.draw(&Text::new(head, (10, 5), font(14).style(FontStyle::Bold)))
            .map_err(e)?;
        let p99 = |x: &Outcome| x.extra_median("p99_us");
        let max = xs
            .iter()
            .flat_map(|x| [x.median(), p99(x)])
            .flatten()
            .fold(0.0f64, f64::max)
            .max(1e-9);
        let (left, width) = (330i32, 520f64);
        let px = |v: f64| ((v / max * width) as i32).max(1);
        for (i, x) in xs.iter().enumerate() {
            let y = 25 + i as i32 * 26;
            area.draw(&Text::new(x.label.clone(), (10, y + 4), font(12)))
                .map_err(e)?;
            let Some(v) = x.median() else {
                let failed = Text::new("failed", (left, y + 4), font(12).color(&RED));
                area.draw(&failed).map_err(e)?;
                continue;
            };
            let c = color(x.family);
            let (mut label, mut end) = (fmt_num(v), px(v));
            match p99(x) {
                Some(q) => {
                    area.draw(&Rectangle::new(
                        [(left, y), (left + px(v), y + 9)],
                        c.filled(),
                    ))
                    .map_err(e)?;
                    let r = Rectangle::new(
                        [(left, y + 10), (left + px(q), y + 18)],
                        c.mix(0.4).filled(),
                    );
                    area.draw(&r).map_err(e)?;
                    label = format!("p50 {label}, p99 {}", fmt_num(q));
                    end = end.max(px(q));
                }
                None => {
                    area.draw(&Rectangle::new(
                        [(left, y), (left + px(v), y + 18)],
                        c.filled(),
                    ))
                    .map_err(e)?;
                }
            }
            area.draw(&Text::new(label, (left + end + 5, y + 4), font(12)))
                .map_err(e)?;
        }
        y0 += h + 10;
    }
    root.present().map_err(|e| e.to_string())
}
