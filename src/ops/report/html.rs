//! The report as one self-contained HTML page: inline CSS, charts drawn
//! here as inline SVG, no script, no font, image or anything else fetched.
//! Every piece of text from the ledger (ids, the lab's release notes, the
//! table and stack names) goes through [`escape`].

use std::fmt::Write as _;

use time::{Date, Duration, OffsetDateTime};

use super::{Bucket, Report};

/// Colours that stay apart for colour-blind readers (Okabe and Ito), then grey.
const PALETTE: [&str; 8] = [
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999",
];
const REPEAT_COLOUR: &str = "#D55E00";

const WIDTH: f64 = 880.0;
const HEIGHT: f64 = 230.0;
const LEFT: f64 = 48.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 36.0;

/// Text safe inside HTML elements and quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn when(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!("{} {:02}:{:02} UTC", t.date(), t.hour(), t.minute())
}

/// A duration as a person reads it: 850 ms, 4.2 s, 3 min 10 s, 2 h 5 min.
pub fn span(d: Duration) -> String {
    let ms = d.whole_milliseconds();
    if ms < 1000 {
        return format!("{ms} ms");
    }
    if ms < 60_000 {
        return format!("{:.1} s", ms as f64 / 1000.0);
    }
    let s = d.whole_seconds();
    if s < 3600 {
        return format!("{} min {} s", s / 60, s % 60);
    }
    if s < 86_400 {
        return format!("{} h {} min", s / 3600, (s % 3600) / 60);
    }
    format!("{} d {} h", s / 86_400, (s % 86_400) / 3600)
}

fn month(d: Date) -> &'static str {
    [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][d.month() as usize - 1]
}

fn bucket_label(bucket: Bucket, d: Date) -> String {
    match bucket {
        Bucket::Day => format!("{} {}", month(d), d.day()),
        Bucket::Week => format!("wk {} {}", month(d), d.day()),
    }
}

fn bucket_title(bucket: Bucket, d: Date) -> String {
    match bucket {
        Bucket::Day => d.to_string(),
        Bucket::Week => format!("week from {d}"),
    }
}

/// A round number at or above `max`, and its tick step.
fn axis(max: u64) -> (u64, u64) {
    let max = max.max(1);
    let mut step = 1;
    loop {
        for m in [1, 2, 5] {
            let s = step * m;
            if max.div_ceil(s) <= 5 {
                return (max.div_ceil(s) * s, s);
            }
        }
        step *= 10;
    }
}

/// One series to draw.
struct Drawn<'a> {
    name: &'a str,
    counts: &'a [u64],
    colour: &'a str,
}

/// A bar chart as inline SVG: one slot per label, series stacked or side
/// by side; every bar carries a tooltip (`<title>`) and its count
/// (`data-count`); `marks` are short labels drawn above a slot.
fn bar_chart(
    id: &str,
    description: &str,
    labels: &[String],
    titles: &[String],
    series: &[Drawn],
    stacked: bool,
    marks: &[(usize, String)],
) -> String {
    let n = labels.len().max(1);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let slot = plot_w / n as f64;
    let top_value = (0..labels.len())
        .map(|i| {
            let at = series.iter().map(|s| s.counts.get(i).copied().unwrap_or(0));
            if stacked {
                at.sum()
            } else {
                at.max().unwrap_or(0)
            }
        })
        .max()
        .unwrap_or(0);
    let (y_max, step) = axis(top_value);
    let y = |v: u64| TOP + plot_h - plot_h * v as f64 / y_max as f64;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg id="{id}" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{}" xmlns="http://www.w3.org/2000/svg">"#,
        escape(description)
    );
    let _ = write!(svg, "<title>{}</title>", escape(description));
    // Grid and y axis.
    let mut v = 0;
    while v <= y_max {
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" class="tick" text-anchor="end">{v}</text>"##,
            WIDTH - RIGHT,
            y(v),
            y(v),
            LEFT - 6.0,
            y(v) + 4.0
        );
        v += step;
    }
    bars(&mut svg, titles, series, stacked, slot, &y);
    // X labels: at most 14 (the histogram's 13 all show).
    let every = labels.len().div_ceil(14).max(1);
    for (i, label) in labels.iter().enumerate() {
        if i % every != 0 {
            continue;
        }
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" class="tick" text-anchor="middle">{}</text>"#,
            LEFT + slot * (i as f64 + 0.5),
            HEIGHT - BOTTOM + 16.0,
            escape(label)
        );
    }
    for (i, mark) in marks {
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" class="mark" text-anchor="middle">{}</text>"#,
            LEFT + slot * (*i as f64 + 0.5),
            HEIGHT - BOTTOM + 30.0,
            escape(mark)
        );
    }
    let _ = write!(
        svg,
        r##"<line x1="{LEFT}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#555"/></svg>"##,
        WIDTH - RIGHT,
        TOP + plot_h,
        TOP + plot_h
    );
    svg
}

/// The bars of [`bar_chart`], each with its tooltip and count.
fn bars(
    svg: &mut String,
    titles: &[String],
    series: &[Drawn],
    stacked: bool,
    slot: f64,
    y: &dyn Fn(u64) -> f64,
) {
    let group_w = slot * 0.8;
    let k = series.len().max(1) as f64;
    for (i, title) in titles.iter().enumerate() {
        let x0 = LEFT + slot * i as f64 + (slot - group_w) / 2.0;
        let mut base = 0;
        for (j, s) in series.iter().enumerate() {
            let c = s.counts.get(i).copied().unwrap_or(0);
            if c == 0 {
                continue;
            }
            let (x, w, lo, hi) = if stacked {
                (x0, group_w, base, base + c)
            } else {
                (x0 + group_w / k * j as f64, group_w / k, 0, c)
            };
            base += c;
            let _ = write!(
                svg,
                r#"<rect class="bar" data-count="{c}" x="{x:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}: {} {c}</title></rect>"#,
                y(hi),
                (w - 0.5).max(0.5),
                (y(lo) - y(hi)).max(0.5),
                s.colour,
                escape(title),
                escape(s.name),
            );
        }
    }
}

fn legend(series: &[Drawn]) -> String {
    let mut out = String::from(r#"<ul class="legend">"#);
    for s in series {
        let total: u64 = s.counts.iter().sum();
        let _ = write!(
            out,
            r#"<li><span class="swatch" style="background:{}"></span>{} <span class="n">({total})</span></li>"#,
            s.colour,
            escape(s.name)
        );
    }
    out.push_str("</ul>");
    out
}

fn empty_note(text: &str) -> String {
    format!(r#"<p class="empty">{}</p>"#, escape(text))
}

fn read(text: &str) -> String {
    format!(
        r#"<p class="how"><strong>How to read this:</strong> {}</p>"#,
        escape(text)
    )
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

const STYLE: &str = r#"
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       margin: 0; background: #f6f7f9; color: #1d2733; line-height: 1.45; }
main { max-width: 940px; margin: 0 auto; padding: 24px 20px 40px; background: #fff; }
h1 { font-size: 1.5rem; margin: 0 0 4px; }
h2 { font-size: 1.15rem; margin: 32px 0 6px; border-bottom: 1px solid #e3e6ea; padding-bottom: 4px; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 12px 0; font-size: .9rem; }
dl.meta dt { color: #5b6776; }
dl.meta dd { margin: 0; font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; word-break: break-all; }
.tiles { display: flex; flex-wrap: wrap; gap: 10px; margin: 16px 0; }
.tile { border: 1px solid #e3e6ea; border-radius: 6px; padding: 8px 14px; min-width: 110px; }
.tile b { display: block; font-size: 1.4rem; }
.tile span { color: #5b6776; font-size: .8rem; }
.how { font-size: .88rem; color: #3c4856; background: #f1f5fa; border-left: 3px solid #0072B2; padding: 6px 10px; margin: 6px 0 10px; }
.note { font-size: .85rem; color: #5b6776; }
svg.chart { width: 100%; height: auto; display: block; }
svg .tick { font-size: 11px; fill: #5b6776; }
svg .mark { font-size: 11px; fill: #1d2733; font-weight: 600; }
ul.legend { list-style: none; padding: 0; margin: 4px 0 8px; display: flex; flex-wrap: wrap; gap: 4px 16px; font-size: .82rem; }
ul.legend li { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.swatch { display: inline-block; width: 10px; height: 10px; margin-right: 5px; border-radius: 2px; }
.n { color: #5b6776; }
table { border-collapse: collapse; width: 100%; font-size: .85rem; margin: 8px 0; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #eceff2; vertical-align: top; }
th { color: #5b6776; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.id { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; word-break: break-all; }
.stats { display: flex; flex-wrap: wrap; gap: 6px 22px; font-size: .95rem; margin: 6px 0; }
.empty { color: #5b6776; font-style: italic; }
.warn { color: #8a3b00; }
footer { margin-top: 36px; font-size: .8rem; color: #5b6776; }
@media print { body { background: #fff; } main { padding: 0; } }
"#;

/// The whole page.
pub fn render(r: &Report) -> String {
    let mut page = String::new();
    let name = r.source.stack.as_deref().unwrap_or(&r.source.table);
    let _ = write!(
        page,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<meta name="referrer" content="no-referrer">
<title>Participation report: {}</title>
<style>{STYLE}</style></head>
<body><main>
<h1>Participation report: {}</h1>
<p class="note">What the exclusion ledger records about the lab's studies on Amazon Mechanical Turk.</p>
"#,
        escape(name),
        escape(name)
    );
    header(&mut page, r);

    let labels: Vec<String> = r
        .buckets
        .iter()
        .map(|d| bucket_label(r.bucket, *d))
        .collect();
    let titles: Vec<String> = r
        .buckets
        .iter()
        .map(|d| bucket_title(r.bucket, *d))
        .collect();
    let axis = Axis {
        labels: &labels,
        titles: &titles,
    };
    participations(&mut page, r, &axis);
    exposure(&mut page, r);
    check(&mut page, r, &axis);
    releases(&mut page, r, &axis);
    if let Some(c) = &r.coverage {
        coverage(&mut page, c);
    }
    let _ = write!(
        page,
        r#"<footer>Made by <code>mturk-exclusion report</code> {}. This page loads nothing: its styles and charts are in this file, and it runs no script.</footer>
</main></body></html>
"#,
        env!("CARGO_PKG_VERSION")
    );
    page
}

/// The buckets' labels under a chart and their titles (tooltips).
struct Axis<'a> {
    labels: &'a [String],
    titles: &'a [String],
}

/// What the page is about: its source, its range, and the totals.
fn header(page: &mut String, r: &Report) {
    let covered = match r.covered {
        Some((a, b)) => format!("{} to {}", when(a), when(b)),
        None => "nothing recorded in this range".to_owned(),
    };
    let ids = if r.with_worker_ids {
        r#"<span class="warn">shown (--with-worker-ids): worker ids are personal data; store this file as the IRB protocol says</span>"#.to_owned()
    } else {
        "not shown (none is on this page; release notes have them replaced by [worker id])"
            .to_owned()
    };
    let _ = write!(
        page,
        r#"<dl class="meta">
<dt>Pool (stack)</dt><dd>{}</dd>
<dt>Ledger table</dt><dd>{}</dd>
<dt>Qualification</dt><dd>{}</dd>
<dt>MTurk</dt><dd>{}</dd>
<dt>Generated</dt><dd>{}</dd>
<dt>Covers</dt><dd>{}{}</dd>
<dt>Counted per</dt><dd>{} (UTC)</dd>
<dt>Worker ids</dt><dd>{ids}</dd>
</dl>
"#,
        escape(r.source.stack.as_deref().unwrap_or("(not given: --table)")),
        escape(&r.source.table),
        escape(&r.source.qualification),
        escape(&r.source.environment),
        when(r.generated_at),
        escape(&covered),
        r.since
            .map(|s| format!(" (--since {})", when(s)))
            .unwrap_or_default(),
        r.bucket.name(),
    );
    let _ = write!(
        page,
        r#"<div class="tiles">
<div class="tile"><b>{}</b><span>participations</span></div>
<div class="tile"><b>{}</b><span>distinct workers</span></div>
<div class="tile"><b>{}</b><span>studies (HIT types)</span></div>
<div class="tile"><b>{}</b><span>workers excluded now</span></div>
<div class="tile"><b>{}</b><span>releases</span></div>
</div>
"#,
        r.participations,
        r.workers,
        r.studies.len(),
        r.excluded_now,
        r.releases.list.len()
    );
}

fn participations(page: &mut String, r: &Report, axis: &Axis) {
    page.push_str(r#"<section id="participations"><h2>Participations per study</h2>"#);
    page.push_str(&read(&format!(
        "each bar is one {} (UTC), by MTurk's submit time (when the ledger learned of a \
         participation, if MTurk gave none); each colour is one study, i.e. one HIT type. \
         Hover a bar for its count.",
        r.bucket.name()
    )));
    if r.participations == 0 {
        page.push_str(&empty_note("No participation in this range."));
    } else {
        let drawn: Vec<Drawn> = r
            .study_series
            .iter()
            .enumerate()
            .map(|(i, s)| Drawn {
                name: &s.name,
                counts: &s.counts,
                colour: PALETTE[i.min(PALETTE.len() - 1)],
            })
            .collect();
        page.push_str(&bar_chart(
            "chart-participations",
            "Participations per study over time",
            axis.labels,
            axis.titles,
            &drawn,
            true,
            &[],
        ));
        page.push_str(&legend(&drawn));
        page.push_str(
            r#"<table><thead><tr><th>Study (HIT type)</th><th class="num">Participations</th><th class="num">Workers</th><th>First</th><th>Last</th></tr></thead><tbody>"#,
        );
        for s in &r.studies {
            let _ = write!(
                page,
                r#"<tr><td class="id">{}</td><td class="num">{}</td><td class="num">{}</td><td>{}</td><td>{}</td></tr>"#,
                escape(s.hit_type.as_deref().unwrap_or("(no HIT type recorded)")),
                s.participations,
                s.workers,
                when(s.first),
                when(s.last)
            );
        }
        page.push_str("</tbody></table>");
    }
    if r.without_study > 0 {
        let _ = write!(
            page,
            r#"<p class="note">Also {} named by hand (<code>exclude --worker</code>) or found holding the qualification by <code>reconcile</code>: no assignment, so no study; not counted above.</p>"#,
            plural(r.without_study, "worker", "workers")
        );
    }
    page.push_str("</section>\n");
}

fn exposure(page: &mut String, r: &Report) {
    let e = &r.exposure;
    page.push_str(r#"<section id="exposure"><h2>Exposure window</h2>"#);
    page.push_str(&read(
        "how long a worker could still see the lab's other studies after submitting: from \
         MTurk's submit time to the moment the ledger recorded the participation as excluded \
         (after the grant). Bars count participations per range of that time; p50 is the \
         typical wait, p99 the slowest 1 in 100. MTurk's times have whole seconds, so a few \
         hundred milliseconds either way is noise. For a worker already excluded by an \
         earlier study the real exposure was none: the time shown is then an upper bound.",
    ));
    if e.measured == 0 {
        page.push_str(&empty_note(
            "No participation learned from a notification in this range.",
        ));
    } else {
        let stat = |d: Option<Duration>| d.map(span).unwrap_or_else(|| "–".into());
        let _ = write!(
            page,
            r#"<div class="stats"><span>measured: <b>{}</b></span><span>p50: <b>{}</b></span><span>p90: <b>{}</b></span><span>p99: <b>{}</b></span><span>max: <b>{}</b></span></div>"#,
            e.measured,
            stat(e.p50),
            stat(e.p90),
            stat(e.p99),
            stat(e.max)
        );
        let bin_of = |d: Option<Duration>| {
            d.and_then(|d| {
                e.bins
                    .iter()
                    .position(|(_, bound, _)| bound.is_none_or(|b| d < b))
            })
        };
        let mut marks: Vec<(usize, String)> = Vec::new();
        for (name, d) in [
            ("p50", e.p50),
            ("p90", e.p90),
            ("p99", e.p99),
            ("max", e.max),
        ] {
            if let Some(i) = bin_of(d) {
                match marks.iter_mut().find(|(j, _)| *j == i) {
                    Some((_, text)) => {
                        text.push(' ');
                        text.push_str(name);
                    }
                    None => marks.push((i, name.to_owned())),
                }
            }
        }
        let bin_labels: Vec<String> = e.bins.iter().map(|(l, _, _)| (*l).to_owned()).collect();
        let counts: Vec<u64> = e.bins.iter().map(|(_, _, c)| *c).collect();
        page.push_str(&bar_chart(
            "chart-exposure",
            "Exposure window: participations per range of time from submission to exclusion",
            &bin_labels,
            &bin_labels,
            &[Drawn {
                name: "participations",
                counts: &counts,
                colour: PALETTE[0],
            }],
            false,
            &marks,
        ));
    }
    if e.not_measured > 0 {
        let _ = write!(
            page,
            r#"<p class="note">Not measured: {} learned another way (a backfill of an older study, or by hand), kept released, or not excluded yet: their exclusion did not follow their submission.</p>"#,
            plural(e.not_measured, "participation", "participations")
        );
    }
    page.push_str("</section>\n");
}

fn check(page: &mut String, r: &Report, axis: &Axis) {
    let c = &r.check;
    page.push_str(r#"<section id="check"><h2>Repeats and the accept-time check</h2>"#);
    page.push_str(&read(
        "the red bars are repeats that were not stopped: participations by a worker who had \
         taken part in one of the lab's studies before (any study, over the whole ledger). \
         The other bars are what the accept-time check left in the ledger: claims (a worker's \
         first accept, one study at a time) and assignments returned or abandoned, which end \
         a claim.",
    ));
    page.push_str(
        r#"<p class="note"><strong>What is not counted here:</strong> workers the check turned away (answers <code>took_part</code> and <code>busy</code>). The check writes nothing when it refuses, so the ledger cannot count refusals; their numbers are CloudWatch metrics, on the stack's dashboard under "Accept-time checks by outcome". The ledger also keeps only each worker's latest claim, until it expires (DynamoDB removes expired claims, usually within days), and returns and abandons for 8 days: older ones are gone, so those bars cover recent weeks only.</p>"#,
    );
    let check_series = [
        Drawn {
            name: &c.repeats.name,
            counts: &c.repeats.counts,
            colour: REPEAT_COLOUR,
        },
        Drawn {
            name: &c.claims.name,
            counts: &c.claims.counts,
            colour: PALETTE[0],
        },
        Drawn {
            name: &c.returned.name,
            counts: &c.returned.counts,
            colour: PALETTE[2],
        },
        Drawn {
            name: &c.abandoned.name,
            counts: &c.abandoned.counts,
            colour: PALETTE[7],
        },
    ];
    let _ = write!(
        page,
        r#"<div class="stats"><span>repeats not stopped: <b>{}</b> by <b>{}</b></span><span>claims stored: <b>{}</b> ({} open now)</span><span>claims ended with no word from MTurk: <b>{}</b></span><span>returned: <b>{}</b></span><span>abandoned: <b>{}</b></span></div>"#,
        c.repeats.total(),
        plural(c.repeat_workers, "worker", "workers"),
        c.claims.total(),
        c.claims_open,
        c.claims_unnotified,
        c.returned.total(),
        c.abandoned.total()
    );
    if check_series
        .iter()
        .all(|s| s.counts.iter().all(|n| *n == 0))
    {
        page.push_str(&empty_note(
            "No repeat, claim, return or abandon in this range.",
        ));
    } else {
        page.push_str(&bar_chart(
            "chart-check",
            "Repeats not stopped, and the accept-time check's claims, returns and abandons over time",
            axis.labels,
            axis.titles,
            &check_series,
            false,
            &[],
        ));
        page.push_str(&legend(&check_series));
    }
    if !c.repeat_list.is_empty() {
        page.push_str(
            r#"<table><thead><tr><th>Worker (repeat)</th><th class="num">Participations</th></tr></thead><tbody>"#,
        );
        for (w, n) in &c.repeat_list {
            let _ = write!(
                page,
                r#"<tr><td class="id">{}</td><td class="num">{n}</td></tr>"#,
                escape(w)
            );
        }
        page.push_str("</tbody></table>");
    }
    page.push_str("</section>\n");
}

fn releases(page: &mut String, r: &Report, axis: &Axis) {
    let rel = &r.releases;
    page.push_str(r#"<section id="releases"><h2>Releases</h2>"#);
    page.push_str(&read(&format!(
        "each bar counts the workers the lab released (un-excluded) in one {} (UTC); the \
         table lists each release, newest first, with the note the lab wrote (the ledger \
         keeps each worker's release notes on their participations, and the last release on \
         the worker).",
        r.bucket.name()
    )));
    if rel.list.is_empty() {
        page.push_str(&empty_note("No release in this range."));
    } else {
        let drawn = [Drawn {
            name: &rel.per_bucket.name,
            counts: &rel.per_bucket.counts,
            colour: PALETTE[1],
        }];
        page.push_str(&bar_chart(
            "chart-releases",
            "Releases over time",
            axis.labels,
            axis.titles,
            &drawn,
            true,
            &[],
        ));
        let worker_head = if r.with_worker_ids {
            "<th>Worker</th>"
        } else {
            ""
        };
        let _ = write!(
            page,
            r#"<table><thead><tr><th>Released</th>{worker_head}<th>Note</th><th class="num">Participations released</th><th>Now</th></tr></thead><tbody>"#
        );
        for x in &rel.list {
            let worker = match (&x.worker_id, r.with_worker_ids) {
                (Some(w), true) => format!(r#"<td class="id">{}</td>"#, escape(w)),
                (None, true) => "<td></td>".to_owned(),
                _ => String::new(),
            };
            let _ = write!(
                page,
                r#"<tr><td>{}</td>{worker}<td>{}</td><td class="num">{}</td><td>{}</td></tr>"#,
                when(x.at),
                x.reason
                    .as_deref()
                    .map(escape)
                    .unwrap_or_else(|| r#"<span class="n">(no note)</span>"#.to_owned()),
                x.participations,
                if x.excluded_again {
                    "excluded again"
                } else {
                    "released"
                }
            );
        }
        page.push_str("</tbody></table>");
    }
    if rel.kept_released > 0 {
        let _ = write!(
            page,
            r#"<p class="note">Also {} kept released: recorded after the worker's release but submitted before it, so by the rule they exclude nobody again.</p>"#,
            plural(rel.kept_released, "participation", "participations")
        );
    }
    page.push_str("</section>\n");
}

fn coverage(page: &mut String, c: &super::Coverage) {
    page.push_str(r#"<section id="coverage"><h2>Coverage</h2>"#);
    page.push_str(&read(&format!(
        "the watch lists the lab's HITs every few minutes; its last run{} found {} live HIT(s) \
         with no DoesNotExist requirement, which workers the lab excluded can take \
         (mturk-exclusion coverage --fix guards them), and it subscribed the HIT types below, \
         which nobody had.",
        c.last_run_at
            .map(|t| format!(" ({})", when(t)))
            .unwrap_or_default(),
        c.live_unguarded
    )));
    if !c.unguarded.is_empty() {
        page.push_str("<table><thead><tr><th>Unguarded live HIT</th><th>HIT type</th><th>Title</th></tr></thead><tbody>");
        for h in &c.unguarded {
            let _ = write!(
                page,
                "<tr><td><code>{}</code></td><td><code>{}</code></td><td>{}</td></tr>",
                escape(h.hit_id.as_str()),
                escape(h.hit_type_id.as_str()),
                escape(h.title.as_deref().unwrap_or(""))
            );
        }
        page.push_str("</tbody></table>");
    }
    if !c.subscribed_by_watch.is_empty() {
        page.push_str("<table><thead><tr><th>HIT type subscribed by the watch</th><th>When</th><th>Backfill</th></tr></thead><tbody>");
        for (hit_type, at, due) in &c.subscribed_by_watch {
            let _ = write!(
                page,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                escape(hit_type),
                at.map(when).unwrap_or_default(),
                if *due { "backfill due" } else { "done" }
            );
        }
        page.push_str("</tbody></table>");
    }
    history_left_out(page, &c.history_left_out);
    page.push_str("</section>\n");
}

/// The lab's history the watch left out, by HIT type, for `adopt`.
fn history_left_out(page: &mut String, left: &[(String, crate::ledger::HistoryLeftOut)]) {
    if left.is_empty() {
        return;
    }
    let submissions: u64 = left.iter().map(|(_, l)| l.submissions).sum();
    page.push_str(&read(&format!(
        "{submissions} earlier submission(s) were left out as the lab's history: made before \
         the pool started, to HITs its list did not guard. Their workers are not excluded; \
         mturk-exclusion adopt takes them in when the lab chooses."
    )));
    page.push_str("<table><thead><tr><th>HIT type with history left out</th><th>HITs</th><th>Submissions</th></tr></thead><tbody>");
    for (hit_type, l) in left {
        let _ = write!(
            page,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            escape(hit_type),
            l.hits,
            l.submissions
        );
    }
    page.push_str("</tbody></table>");
}
