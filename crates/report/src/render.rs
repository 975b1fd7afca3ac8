//! One table model, three renderings: every table of the report (world quality, headline,
//! claims, the full table, comparisons) is built once as a [`Table`] and written as Markdown,
//! LaTeX (booktabs) and HTML, so the formats cannot disagree.

use std::fmt::Write as _;

/// How a cell is emphasised.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Emphasis {
    #[default]
    None,
    /// Best in its column (bold).
    Strong,
    /// A reference or derived row (italic).
    Muted,
    /// A failure or a warning (bold, red in HTML).
    Alert,
}

/// One cell: its text (plain UTF-8; each renderer escapes it) and emphasis.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Cell {
    pub text: String,
    pub emphasis: Emphasis,
    /// Hover text in HTML (`title`), e.g. the exact value.
    pub title: Option<String>,
}

impl Cell {
    pub fn plain(text: impl Into<String>) -> Cell {
        Cell { text: text.into(), ..Default::default() }
    }
    pub fn with(text: impl Into<String>, emphasis: Emphasis) -> Cell {
        Cell { text: text.into(), emphasis, title: None }
    }
}

impl From<String> for Cell {
    fn from(s: String) -> Cell {
        Cell::plain(s)
    }
}

impl From<&str> for Cell {
    fn from(s: &str) -> Cell {
        Cell::plain(s)
    }
}

/// Consecutive columns under one label, e.g. "paper (secondary source, unverified)".
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ColumnGroup {
    pub label: String,
    /// The first column (0-based) and how many columns the group spans.
    pub first: usize,
    pub len: usize,
}

/// A table: a header, rows, horizontal rules after some rows, and a note printed under it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    pub header: Vec<String>,
    /// Column groups, left to right, not overlapping: a spanning header row in HTML and LaTeX.
    /// Markdown has one header row only, so the headers of grouped columns must name their
    /// group themselves (e.g. "paper Acc_forget").
    pub groups: Vec<ColumnGroup>,
    /// Per column: right-aligned (numbers) or left.
    pub right: Vec<bool>,
    pub rows: Vec<Vec<Cell>>,
    /// A rule after row i (0-based), e.g. between the references and the methods.
    pub rules_after: Vec<usize>,
    /// Under the table (plain text).
    pub note: String,
}

impl Table {
    pub fn new(header: &[&str], right: &[bool]) -> Table {
        Table { header: header.iter().map(|s| s.to_string()).collect(), right: right.to_vec(), ..Default::default() }
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Markdown (GitHub tables); bold / italic by emphasis; the note as a paragraph.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let esc = |s: &str| s.replace('|', "\\|").replace('\n', " ");
        let _ = writeln!(out, "| {} |", self.header.iter().map(|h| esc(h)).collect::<Vec<_>>().join(" | "));
        let rule: Vec<&str> = (0..self.header.len())
            .map(|i| if self.right.get(i).copied().unwrap_or(false) { "---:" } else { "---" })
            .collect();
        let _ = writeln!(out, "|{}|", rule.join("|"));
        for row in &self.rows {
            let cells: Vec<String> = row
                .iter()
                .map(|c| {
                    let t = esc(&c.text);
                    match c.emphasis {
                        _ if t.is_empty() => t,
                        Emphasis::None => t,
                        Emphasis::Strong | Emphasis::Alert => format!("**{t}**"),
                        Emphasis::Muted => format!("*{t}*"),
                    }
                })
                .collect();
            let _ = writeln!(out, "| {} |", cells.join(" | "));
        }
        if !self.note.is_empty() {
            let _ = write!(out, "\n{}\n", self.note);
        }
        out.push('\n');
        out
    }

    /// LaTeX: a booktabs `tabular` inside a `table` with the note as its caption.
    pub fn latex(&self, caption_prefix: &str) -> String {
        let mut out = String::from("\\begin{table}[t]\n\\centering\n\\small\n");
        let spec: String = (0..self.header.len())
            .map(|i| if self.right.get(i).copied().unwrap_or(false) { 'r' } else { 'l' })
            .collect();
        let _ = writeln!(out, "\\begin{{tabular}}{{{spec}}}\n\\toprule");
        if !self.groups.is_empty() {
            let mut cells = Vec::new();
            let mut rules = String::new();
            for span in self.spans() {
                match span {
                    Span::Free => cells.push(String::new()),
                    Span::Group(g) => {
                        cells.push(format!("\\multicolumn{{{}}}{{c}}{{{}}}", g.len, latex_escape(&g.label)));
                        let _ = write!(rules, "\\cmidrule(lr){{{}-{}}}", g.first + 1, g.first + g.len);
                    }
                }
            }
            let _ = writeln!(out, "{} \\\\\n{rules}", cells.join(" & "));
        }
        let _ = writeln!(
            out,
            "{} \\\\\n\\midrule",
            self.header.iter().map(|h| latex_escape(h)).collect::<Vec<_>>().join(" & ")
        );
        for (i, row) in self.rows.iter().enumerate() {
            let cells: Vec<String> = row
                .iter()
                .map(|c| {
                    let t = latex_escape(&c.text);
                    match c.emphasis {
                        _ if t.is_empty() => t,
                        Emphasis::None => t,
                        Emphasis::Strong | Emphasis::Alert => format!("\\textbf{{{t}}}"),
                        Emphasis::Muted => format!("\\emph{{{t}}}"),
                    }
                })
                .collect();
            let _ = writeln!(out, "{} \\\\", cells.join(" & "));
            if self.rules_after.contains(&i) && i + 1 < self.rows.len() {
                out.push_str("\\midrule\n");
            }
        }
        let _ = writeln!(
            out,
            "\\bottomrule\n\\end{{tabular}}\n\\caption{{{}{}}}\n\\end{{table}}\n",
            latex_escape(caption_prefix),
            latex_escape(&self.note)
        );
        out
    }

    /// HTML `<table>` (with `class`), then the note as `<p class="note">`.
    pub fn html(&self, class: &str) -> String {
        let mut out = format!("<div class=\"scroll\"><table class=\"{}\">\n<thead>", esc_html(class));
        if !self.groups.is_empty() {
            out.push_str("<tr>");
            for span in self.spans() {
                match span {
                    Span::Free => out.push_str("<th></th>"),
                    Span::Group(g) => {
                        let _ = write!(out, "<th colspan=\"{}\" class=\"group\">{}</th>", g.len, esc_html(&g.label));
                    }
                }
            }
            out.push_str("</tr>\n");
        }
        out.push_str("<tr>");
        for (i, h) in self.header.iter().enumerate() {
            let _ = write!(out, "<th{}>{}</th>", align(&self.right, i), esc_html(h));
        }
        out.push_str("</tr></thead>\n<tbody>\n");
        for (r, row) in self.rows.iter().enumerate() {
            let rule = if r > 0 && self.rules_after.contains(&(r - 1)) { " class=\"rule\"" } else { "" };
            let _ = write!(out, "<tr{rule}>");
            for (i, c) in row.iter().enumerate() {
                let title = c.title.as_ref().map_or(String::new(), |t| format!(" title=\"{}\"", esc_html(t)));
                let text = esc_html(&c.text);
                let body = match c.emphasis {
                    Emphasis::None => text,
                    Emphasis::Strong => format!("<strong>{text}</strong>"),
                    Emphasis::Muted => format!("<em>{text}</em>"),
                    Emphasis::Alert => format!("<strong class=\"alert\">{text}</strong>"),
                };
                let _ = write!(out, "<td{}{title}>{body}</td>", align(&self.right, i));
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</tbody></table></div>\n");
        if !self.note.is_empty() {
            let _ = writeln!(out, "<p class=\"note\">{}</p>", esc_html(&self.note));
        }
        out
    }
}

/// A column outside every group, or a whole group: the cells of a spanning header row.
enum Span<'a> {
    Free,
    Group(&'a ColumnGroup),
}

impl Table {
    /// The header columns, left to right, with each group as one span.
    fn spans(&self) -> Vec<Span<'_>> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.header.len() {
            match self.groups.iter().find(|g| g.first == i && g.len > 0) {
                Some(g) => {
                    out.push(Span::Group(g));
                    i += g.len;
                }
                None => {
                    out.push(Span::Free);
                    i += 1;
                }
            }
        }
        out
    }
}

fn align(right: &[bool], i: usize) -> &'static str {
    if right.get(i).copied().unwrap_or(false) {
        " class=\"num\""
    } else {
        ""
    }
}

/// Escapes `& < > " '` for HTML text and attribute values.
pub fn esc_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
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

/// Escapes LaTeX's special characters and writes the Greek and math symbols the report uses in
/// math mode.
pub fn latex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '_' | '%' | '&' | '#' | '$' | '{' | '}' => {
                out.push('\\');
                out.push(c);
            }
            '~' => out.push_str("\\textasciitilde{}"),
            '^' => out.push_str("\\textasciicircum{}"),
            '\\' => out.push_str("\\textbackslash{}"),
            'θ' => out.push_str("$\\theta$"),
            'α' => out.push_str("$\\alpha$"),
            'β' => out.push_str("$\\beta$"),
            'ρ' => out.push_str("$\\rho$"),
            'τ' => out.push_str("$\\tau$"),
            'Δ' => out.push_str("$\\Delta$"),
            '−' => out.push_str("$-$"),
            '|' => out.push_str("$|$"),
            '×' => out.push_str("$\\times$"),
            '÷' => out.push_str("$\\div$"),
            '≈' => out.push_str("$\\approx$"),
            '≤' => out.push_str("$\\leq$"),
            '≥' => out.push_str("$\\geq$"),
            '→' => out.push_str("$\\rightarrow$"),
            '±' => out.push_str("$\\pm$"),
            '✗' => out.push_str("$\\times$"),
            '·' => out.push_str("$\\cdot$"),
            '‖' => out.push_str("$\\|$"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_renderings() {
        let mut t = Table::new(&["method", "a|b"], &[false, true]);
        t.rows.push(vec![Cell::plain("x<y"), Cell::with("0.5", Emphasis::Strong)]);
        t.rows.push(vec![Cell::with("ref", Emphasis::Muted), Cell::plain("")]);
        t.rules_after.push(0);
        t.note = "n_1".into();
        assert_eq!(t.markdown(), "| method | a\\|b |\n|---|---:|\n| x<y | **0.5** |\n| *ref* |  |\n\nn_1\n\n");
        let h = t.html("t");
        assert!(h.contains("<td>x&lt;y</td><td class=\"num\"><strong>0.5</strong></td>"), "{h}");
        assert!(h.contains("<tr class=\"rule\"><td><em>ref</em></td>"), "{h}");
        let l = t.latex("Caption. ");
        assert!(l.contains("{lr}") && l.contains("x<y & \\textbf{0.5} \\\\\n\\midrule\n"), "{l}");
        assert!(l.contains("\\caption{Caption. n\\_1}"), "{l}");
    }

    #[test]
    fn column_groups_span_in_html_and_latex() {
        let mut t = Table::new(&["method", "a", "paper a", "paper b"], &[false, true, true, true]);
        t.groups.push(ColumnGroup { label: "paper".into(), first: 2, len: 2 });
        t.rows.push(vec![Cell::plain("x"), Cell::plain("1"), Cell::plain("2"), Cell::plain("3")]);
        let h = t.html("t");
        assert!(
            h.contains("<thead><tr><th></th><th></th><th colspan=\"2\" class=\"group\">paper</th></tr>\n<tr><th>"),
            "{h}"
        );
        let l = t.latex("");
        assert!(
            l.contains("\\toprule\n &  & \\multicolumn{2}{c}{paper} \\\\\n\\cmidrule(lr){3-4}\nmethod & a &"),
            "{l}"
        );
        // Markdown has one header row: the headers name their group
        assert!(t.markdown().starts_with("| method | a | paper a | paper b |\n"));
    }
}
