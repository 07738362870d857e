//! `mercato-compare`: turns the runs of `benches/compare.sh` into the
//! table BENCHMARKS.md shows and an SVG chart beside it.
//!
//! Input, one run per line: the system, its persistence, then the JSON
//! line `mercato-load --json` printed, tab-separated. The table gives each
//! run's rate, p50 and p99, and the ratios the targets name: mercato in
//! memory against Redis in memory, mercato `always` against Redis with
//! AOF `always` and against PostgreSQL.
//!
//! A second chart, with `--latency-svg`, shows each run's p50 and p99.
//!
//! ```sh
//! mercato-compare --runs runs.tsv --svg docs/compare.svg \
//!     --latency-svg docs/compare-latency.svg > table.md
//! ```

use std::path::PathBuf;

use clap::Parser;
use plotters::prelude::*;

#[derive(Parser)]
struct Args {
    /// The runs, as `benches/compare.sh` writes them.
    #[arg(long)]
    runs: PathBuf,
    /// Where to write the throughput chart.
    #[arg(long)]
    svg: PathBuf,
    /// Where to write the latency chart, if anywhere.
    #[arg(long)]
    latency_svg: Option<PathBuf>,
}

struct Run {
    system: String,
    persistence: String,
    workload: String,
    /// Requests decided per second: orders placed or refused.
    rate: f64,
    p50_us: f64,
    p99_us: f64,
}

/// The number after `"key":` in a line of `mercato-load --json`.
fn number(json: &str, key: &str) -> Option<f64> {
    let at = json.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = &json[at..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end].trim().parse().ok()
}

fn text(json: &str, key: &str) -> Option<String> {
    let at = json.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let rest = &json[at..];
    Some(rest[..rest.find('"')?].to_string())
}

fn parse(line: &str) -> Option<Run> {
    let mut fields = line.splitn(3, '\t');
    let (system, persistence, json) = (fields.next()?, fields.next()?, fields.next()?);
    Some(Run {
        system: system.to_string(),
        persistence: persistence.to_string(),
        workload: text(json, "workload")?,
        rate: number(json, "requests_per_sec")?,
        p50_us: number(json, "p50_us")?,
        p99_us: number(json, "p99_us")?,
    })
}

fn find<'a>(runs: &'a [Run], workload: &str, system: &str, durable: bool) -> Option<&'a Run> {
    runs.iter().find(|r| {
        r.workload == workload && r.system == system && (r.persistence != "in memory") == durable
    })
}

fn main() {
    let args = Args::parse();
    let input = std::fs::read_to_string(&args.runs).unwrap_or_else(|e| {
        eprintln!("mercato-compare: {}: {e}", args.runs.display());
        std::process::exit(2);
    });
    let runs: Vec<Run> = input.lines().filter_map(parse).collect();
    if runs.is_empty() {
        eprintln!("mercato-compare: no runs in {}", args.runs.display());
        std::process::exit(2);
    }
    let mut workloads: Vec<&str> = Vec::new();
    for r in &runs {
        if !workloads.contains(&r.workload.as_str()) {
            workloads.push(&r.workload);
        }
    }
    println!("| workload | system | persistence | requests decided/s | p50 | p99 |");
    println!("|---|---|---|---:|---:|---:|");
    for r in &runs {
        println!(
            "| {} | {} | {} | {:.0} | {:.0} µs | {:.0} µs |",
            r.workload, r.system, r.persistence, r.rate, r.p50_us, r.p99_us
        );
    }
    println!();
    println!(
        "| workload | mercato in memory ÷ Redis in memory | mercato `always` ÷ Redis AOF `always` | mercato `always` ÷ PostgreSQL |"
    );
    println!("|---|---:|---:|---:|");
    for w in &workloads {
        let ratio = |a: Option<&Run>, b: Option<&Run>| match (a, b) {
            (Some(a), Some(b)) if b.rate > 0.0 => format!("{:.1}×", a.rate / b.rate),
            _ => "–".to_string(),
        };
        let durable = find(&runs, w, "mercato", true);
        println!(
            "| {w} | {} | {} | {} |",
            ratio(
                find(&runs, w, "mercato", false),
                find(&runs, w, "redis", false)
            ),
            ratio(durable, find(&runs, w, "redis", true)),
            ratio(durable, find(&runs, w, "postgresql", true)),
        );
    }
    if let Err(e) = chart(&args.svg, &runs, &workloads) {
        eprintln!("mercato-compare: chart: {e}");
        std::process::exit(1);
    }
    if let Some(path) = &args.latency_svg
        && let Err(e) = latency_chart(path, &runs)
    {
        eprintln!("mercato-compare: latency chart: {e}");
        std::process::exit(1);
    }
}

/// Each run's p50 and p99 as two thin bars under the run's name, one row
/// per run, on a log scale of microseconds.
fn latency_chart(path: &PathBuf, runs: &[Run]) -> Result<(), Box<dyn std::error::Error>> {
    let rows = runs.len();
    let root = SVGBackend::new(path, (900, 80 + 44 * rows as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let top = runs.iter().map(|r| r.p99_us).fold(10.0, f64::max) * 3.0;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "latency per run: p50 and p99 (µs, log scale)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(10)
        .build_cartesian_2d((10f64..top).log_scale(), 0f64..rows as f64)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .x_desc("microseconds")
        .draw()?;
    for (i, r) in runs.iter().enumerate() {
        // The first run on top.
        let y = (rows - 1 - i) as f64;
        let bars = [
            (r.p99_us, y + 0.08, y + 0.3, RED),
            (r.p50_us, y + 0.3, y + 0.52, BLUE),
        ];
        for (us, lo, hi, color) in bars {
            chart.draw_series(std::iter::once(Rectangle::new(
                [(10.0, lo), (us.max(10.0), hi)],
                color.filled(),
            )))?;
        }
        let label = format!(
            "{} · {} {}: p50 {:.0} µs, p99 {:.0} µs",
            r.workload, r.system, r.persistence, r.p50_us, r.p99_us
        );
        chart.draw_series(std::iter::once(Text::new(
            label,
            (11.0, y + 0.92),
            ("sans-serif", 13),
        )))?;
    }
    for (name, color) in [("p50", BLUE), ("p99", RED)] {
        chart
            .draw_series(std::iter::empty::<Rectangle<(f64, f64)>>())?
            .label(name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Bars of each run's rate, grouped by workload, on a log scale: the
/// systems differ by three orders of magnitude.
fn chart(
    path: &PathBuf,
    runs: &[Run],
    workloads: &[&str],
) -> Result<(), Box<dyn std::error::Error>> {
    let per_group = runs.len().div_ceil(workloads.len()).max(1);
    let root = SVGBackend::new(path, (900, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let top = runs.iter().map(|r| r.rate).fold(1.0, f64::max) * 3.0;
    let slots = workloads.len() * (per_group + 1);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "requests decided per second (log scale)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..slots as f64, (100f64..top).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("requests/s")
        .draw()?;
    let colors = [RED, BLUE, CYAN, GREEN, MAGENTA, BLACK];
    let mut legend: Vec<String> = Vec::new();
    for (g, w) in workloads.iter().enumerate() {
        let group: Vec<&Run> = runs.iter().filter(|r| r.workload == *w).collect();
        let x0 = (g * (per_group + 1)) as f64;
        for (i, r) in group.iter().enumerate() {
            let name = format!("{} {}", r.system, r.persistence);
            let first = !legend.contains(&name);
            if first {
                legend.push(name.clone());
            }
            let k = legend.iter().position(|l| *l == name).expect("listed");
            let color = colors[k % colors.len()];
            let x = x0 + i as f64;
            let bar = Rectangle::new(
                [(x + 0.1, 100.0), (x + 0.9, r.rate.max(100.0))],
                color.filled(),
            );
            let series = chart.draw_series(std::iter::once(bar))?;
            // One legend entry per system, from its first bar.
            if first {
                series.label(name).legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled())
                });
            }
        }
        chart.draw_series(std::iter::once(Text::new(
            w.to_string(),
            (x0 + per_group as f64 / 2.0 - 0.5, 130.0),
            ("sans-serif", 14),
        )))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
