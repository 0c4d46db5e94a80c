//! Bar charts as hand-written SVG: a title, then panels, each a set of
//! horizontal bars (one per server) on its own linear scale starting at
//! zero, with the value written after each bar. No scripts, no external
//! fonts or styles, so the files render anywhere (browsers, GitHub,
//! `rsvg-convert`).

use std::fmt::Write;

/// How a bar is coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// ringws.
    Ringws,
    /// Another WebSocket engine.
    Peer,
    /// The raw TCP echo floor.
    Floor,
}

impl Tone {
    fn fill(self) -> &'static str {
        match self {
            Tone::Ringws => "#d9480f",
            Tone::Peer => "#4263eb",
            Tone::Floor => "#868e96",
        }
    }
}

/// One bar.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    /// Name left of the bar.
    pub label: String,
    /// Length; `None` (not measured) draws no bar and writes "n/a".
    pub value: Option<f64>,
    /// Text right of the bar (the value, formatted).
    pub text: String,
    /// Colour.
    pub tone: Tone,
}

/// One panel: a title and its bars on a common scale.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    /// Above the bars.
    pub title: String,
    /// Top to bottom.
    pub bars: Vec<Bar>,
}

const WIDTH: f64 = 860.0;
const MARGIN: f64 = 16.0;
const LABEL_WIDTH: f64 = 180.0;
const VALUE_WIDTH: f64 = 170.0;
const BAR_HEIGHT: f64 = 18.0;
const BAR_GAP: f64 = 6.0;
const PANEL_TITLE: f64 = 26.0;
const PANEL_GAP: f64 = 16.0;
const HEADER: f64 = 64.0;

/// `text` with XML's special characters escaped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

fn panel_height(panel: &Panel) -> f64 {
    PANEL_TITLE + panel.bars.len() as f64 * (BAR_HEIGHT + BAR_GAP)
}

/// An SVG document: `title`, `subtitle` (machine, date), then `panels`.
pub fn chart(title: &str, subtitle: &str, panels: &[Panel]) -> String {
    let height = HEADER
        + panels
            .iter()
            .map(|panel| panel_height(panel) + PANEL_GAP)
            .sum::<f64>()
        + MARGIN;
    let bar_x = MARGIN + LABEL_WIDTH;
    let bar_span = WIDTH - 2.0 * MARGIN - LABEL_WIDTH - VALUE_WIDTH;
    let mut svg = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">"#
    );
    let _ = writeln!(
        svg,
        r##"<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="#ffffff"/>"##
    );
    let _ = writeln!(
        svg,
        r##"<text x="{MARGIN}" y="28" font-size="18" font-weight="bold" fill="#212529">{}</text>"##,
        escape(title)
    );
    let _ = writeln!(
        svg,
        r##"<text x="{MARGIN}" y="48" font-size="12" fill="#495057">{}</text>"##,
        escape(subtitle)
    );
    let mut y = HEADER;
    for panel in panels {
        let _ = writeln!(svg, r#"<g class="panel" transform="translate(0,{y})">"#);
        let _ = writeln!(
            svg,
            r##"<text x="{MARGIN}" y="17" font-size="14" font-weight="bold" fill="#343a40">{}</text>"##,
            escape(&panel.title)
        );
        let scale_max = panel
            .bars
            .iter()
            .filter_map(|bar| bar.value)
            .filter(|v| v.is_finite() && *v > 0.0)
            .fold(0.0f64, f64::max);
        let axis_bottom = panel_height(panel) - BAR_GAP / 2.0;
        let _ = writeln!(
            svg,
            r##"<line x1="{bar_x}" y1="{PANEL_TITLE}" x2="{bar_x}" y2="{axis_bottom}" stroke="#adb5bd" stroke-width="1"/>"##
        );
        for (index, bar) in panel.bars.iter().enumerate() {
            let top = PANEL_TITLE + index as f64 * (BAR_HEIGHT + BAR_GAP);
            let middle = top + BAR_HEIGHT / 2.0 + 4.0;
            let value = bar.value.filter(|v| v.is_finite() && *v > 0.0);
            let width = match value {
                Some(v) if scale_max > 0.0 => (v / scale_max * bar_span).max(1.0),
                _ => 0.0,
            };
            let weight = if bar.tone == Tone::Ringws {
                "bold"
            } else {
                "normal"
            };
            let _ = writeln!(
                svg,
                r##"<text x="{}" y="{middle}" font-size="12" font-weight="{weight}" text-anchor="end" fill="#212529">{}</text>"##,
                bar_x - 8.0,
                escape(&bar.label)
            );
            let shown = if bar.value.is_some() {
                bar.text.as_str()
            } else {
                "n/a"
            };
            let _ = writeln!(
                svg,
                r#"<rect class="bar" x="{bar_x}" y="{top}" width="{width:.1}" height="{BAR_HEIGHT}" fill="{}"><title>{}: {}</title></rect>"#,
                bar.tone.fill(),
                escape(&bar.label),
                escape(shown)
            );
            let _ = writeln!(
                svg,
                r##"<text x="{:.1}" y="{middle}" font-size="12" font-weight="{weight}" fill="#212529">{}</text>"##,
                bar_x + width + 6.0,
                escape(shown)
            );
        }
        svg.push_str("</g>\n");
        y += panel_height(panel) + PANEL_GAP;
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(label: &str, value: Option<f64>, tone: Tone) -> Bar {
        Bar {
            label: label.to_owned(),
            value,
            text: value.map_or(String::new(), |v| format!("{v} msg/s")),
            tone,
        }
    }

    fn servers() -> Vec<Bar> {
        vec![
            bar("ringws", Some(300.0), Tone::Ringws),
            bar("fastwebsockets", Some(150.0), Tone::Peer),
            bar("Node <ws> & co", None, Tone::Peer),
            bar("raw TCP echo (floor)", Some(600.0), Tone::Floor),
        ]
    }

    #[test]
    fn chart_is_well_formed_with_one_bar_per_server_in_each_panel() {
        let panels = vec![
            Panel {
                title: "echo 512 B".into(),
                bars: servers(),
            },
            Panel {
                title: "churn \"cycles\"/s".into(),
                bars: servers(),
            },
        ];
        let svg = chart("ringws & peers", "2 CPUs <loopback>", &panels);
        let document = roxmltree::Document::parse(&svg).expect("well-formed XML");
        let root = document.root_element();
        assert_eq!(root.tag_name().name(), "svg");
        let groups: Vec<_> = root
            .children()
            .filter(|node| node.attribute("class") == Some("panel"))
            .collect();
        assert_eq!(groups.len(), 2);
        for group in groups {
            let bars: Vec<_> = group
                .descendants()
                .filter(|node| node.attribute("class") == Some("bar"))
                .collect();
            assert_eq!(bars.len(), 4, "one bar per server");
            let widths: Vec<f64> = bars
                .iter()
                .map(|node| node.attribute("width").unwrap().parse().unwrap())
                .collect();
            // The largest value spans the whole bar area; the others are
            // proportional; an unmeasured one has no length.
            let span = WIDTH - 2.0 * MARGIN - LABEL_WIDTH - VALUE_WIDTH;
            assert!((widths[3] - span).abs() < 0.1, "{widths:?}");
            assert!((widths[0] - span / 2.0).abs() < 0.1, "{widths:?}");
            assert!((widths[1] - span / 4.0).abs() < 0.1, "{widths:?}");
            assert_eq!(widths[2], 0.0);
            let texts: Vec<String> = group
                .descendants()
                .filter(|node| node.is_text())
                .filter_map(|node| node.text().map(str::to_owned))
                .collect();
            assert!(texts.iter().any(|t| t == "Node <ws> & co"), "{texts:?}");
            assert!(texts.iter().any(|t| t == "n/a"), "{texts:?}");
        }
    }

    #[test]
    fn escape_covers_xml_specials() {
        assert_eq!(escape(r#"a<b>&"c"'"#), "a&lt;b&gt;&amp;&quot;c&quot;&apos;");
        assert_eq!(escape("×16 µs"), "×16 µs");
    }
}
