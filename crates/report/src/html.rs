//! The report as one self-contained HTML page (`index.html`): inline CSS and inline SVG
//! figures, no scripts, no fonts or images fetched at view time (readable offline), light and
//! dark colour schemes (`prefers-color-scheme`; figures keep a white card so their colours
//! read the same). Sections: world quality, headline, reproduction (paper benchmarks), claims,
//! figures, then the appendix (notes, every metric and grid point, comparisons, failed cells,
//! files).

use std::fmt::Write as _;

use crate::render::{esc_html, Table};

/// One figure of the page.
pub struct PageFigure<'a> {
    pub title: &'a str,
    pub caption: &'a str,
    /// An SVG document (`<svg …>…</svg>`).
    pub svg: &'a str,
}

/// A section: heading, optional paragraphs, tables.
pub struct Section<'a> {
    pub id: &'a str,
    pub title: String,
    pub paragraphs: Vec<String>,
    /// (class, table), each preceded by an optional sub-heading.
    pub tables: Vec<(Option<String>, Table)>,
    /// Raw HTML appended after the tables (escaped by the caller).
    pub raw: String,
}

const STYLE: &str = r#"
:root { color-scheme: light dark; --fg: #1b1f24; --bg: #ffffff; --muted: #57606a; --rule: #d0d7de;
        --head: #f6f8fa; --alert: #b42318; --strong: #0b3d91; --card: #ffffff; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e6edf3; --bg: #0d1117; --muted: #9da7b3; --rule: #30363d; --head: #161b22;
          --alert: #ff7b72; --strong: #79c0ff; --card: #f6f8fa; }
}
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: var(--fg);
       background: var(--bg); margin: 0 auto; max-width: 1240px; padding: 1.2rem 1.5rem 3rem; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
h2 { font-size: 1.25rem; border-bottom: 1px solid var(--rule); padding-bottom: .25rem; margin-top: 2rem; }
h3 { font-size: 1.05rem; margin-bottom: .4rem; }
p.meta, p.note { color: var(--muted); font-size: .88rem; }
p.warning { color: var(--alert); font-weight: 600; }
nav a { margin-right: 1rem; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: .86rem; margin: .4rem 0; }
th, td { border-bottom: 1px solid var(--rule); padding: .3rem .55rem; vertical-align: top; }
th { background: var(--head); text-align: left; font-weight: 600; max-width: 13em; }
th.group { text-align: center; border-bottom: 2px solid var(--rule); }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.num { min-width: 6.5em; }
td[title] { text-decoration: underline dotted; }
tr.rule td { border-top: 2px solid var(--rule); }
strong { color: var(--strong); }
strong.alert { color: var(--alert); }
figure { margin: 1.2rem 0; }
figure .card { background: var(--card); border: 1px solid var(--rule); border-radius: 6px; padding: .4rem;
               display: inline-block; max-width: 100%; }
figure svg { max-width: 100%; height: auto; display: block; }
figcaption { color: var(--muted); font-size: .88rem; max-width: 900px; margin-top: .3rem; }
ul.notes li { margin-bottom: .25rem; }
"#;

/// The whole page.
pub fn page(title: &str, meta: &str, warnings: &[String], sections: &[Section], figures: &[PageFigure]) -> String {
    let mut out = String::from("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    let _ = writeln!(out, "<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>", esc_html(title));
    let _ = writeln!(out, "<h1>{}</h1>\n<p class=\"meta\">{}</p>", esc_html(title), esc_html(meta));
    for w in warnings {
        let _ = writeln!(out, "<p class=\"warning\">{}</p>", esc_html(w));
    }
    out.push_str("<nav>");
    for s in sections.iter().filter(|s| s.id != "appendix") {
        let _ = write!(out, "<a href=\"#{}\">{}</a>", esc_html(s.id), esc_html(&s.title));
    }
    if !figures.is_empty() {
        out.push_str("<a href=\"#figures\">Figures</a>");
    }
    if sections.iter().any(|s| s.id == "appendix") {
        out.push_str("<a href=\"#appendix\">Appendix</a>");
    }
    out.push_str("</nav>\n");
    let (main, appendix): (Vec<&Section>, Vec<&Section>) = sections.iter().partition(|s| s.id != "appendix");
    for s in main {
        section(&mut out, s);
    }
    if !figures.is_empty() {
        out.push_str("<h2 id=\"figures\">Figures</h2>\n");
        for (i, f) in figures.iter().enumerate() {
            let _ = writeln!(
                out,
                "<figure id=\"figure-{}\"><h3>Figure {}. {}</h3><div class=\"card\">{}</div><figcaption>{}</figcaption></figure>",
                i + 1,
                i + 1,
                esc_html(f.title),
                strip_prolog(f.svg),
                esc_html(f.caption)
            );
        }
    }
    for s in appendix {
        section(&mut out, s);
    }
    out.push_str("</body>\n</html>\n");
    out
}

fn section(out: &mut String, s: &Section) {
    let _ = writeln!(out, "<h2 id=\"{}\">{}</h2>", esc_html(s.id), esc_html(&s.title));
    for p in &s.paragraphs {
        let _ = writeln!(out, "<p>{}</p>", esc_html(p));
    }
    for (sub, t) in &s.tables {
        if let Some(sub) = sub {
            let _ = writeln!(out, "<h3>{}</h3>", esc_html(sub));
        }
        out.push_str(&t.html(s.id));
    }
    out.push_str(&s.raw);
}

/// An SVG without an XML prolog or doctype (inline SVG must start at `<svg`).
fn strip_prolog(svg: &str) -> &str {
    match svg.find("<svg") {
        Some(i) => &svg[i..],
        None => svg,
    }
}

/// `<ul class="notes">` of escaped items.
pub fn list(items: &[String]) -> String {
    if items.is_empty() {
        return String::new();
    }
    let mut out = String::from("<ul class=\"notes\">");
    for i in items {
        let _ = write!(out, "<li>{}</li>", esc_html(i));
    }
    out.push_str("</ul>\n");
    out
}
