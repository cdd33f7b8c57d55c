//! The console's HTML: the page frame, escaping, sizes for people, and
//! charts drawn as inline SVG on the server (no script, nothing loaded
//! from elsewhere). Every piece of user-controlled text goes through
//! [`esc`].

use std::fmt::Write;

use super::session::Flash;

/// Text made safe for HTML element content and quoted attribute values:
/// `&`, `<`, `>`, `"` and `'` become entities (the XML escaper's five are
/// exactly HTML's).
pub fn esc(s: &str) -> String {
    crate::xml_escape::escape(s)
}

/// The style sheet, served at `/admin/style.css`.
pub const STYLE: &str = include_str!("style.css");

pub use crate::accounts::human;

/// Who is looking, for the navigation.
pub struct Viewer<'a> {
    pub name: &'a str,
    pub admin: bool,
    pub csrf: &'a str,
}

/// A whole page: navigation (when logged in), the one-shot message, then
/// `body`.
pub fn page(title: &str, viewer: Option<&Viewer>, flash: Option<&Flash>, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 2048);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · dedupdav</title><link rel=\"stylesheet\" href=\"/admin/style.css\"></head>\n<body>\n",
        esc(title)
    );
    if let Some(v) = viewer {
        out.push_str("<nav><span class=\"brand\">dedupdav</span>");
        if v.admin {
            out.push_str(
                "<a href=\"/admin/dashboard\">Dashboard</a><a href=\"/admin/users\">Users</a>\
                 <a href=\"/admin/jobs\">Jobs</a><a href=\"/admin/audit\">Audit log</a>",
            );
        }
        let _ = write!(
            out,
            "<a href=\"/admin/account\">My account</a><span class=\"who\">{}</span>\
             <form method=\"post\" action=\"/admin/logout\" class=\"inline\">{}\
             <button type=\"submit\">Log out</button></form></nav>",
            esc(v.name),
            csrf_field(v.csrf)
        );
    }
    let _ = write!(out, "<main>\n<h1>{}</h1>\n", esc(title));
    match flash {
        Some(Flash::Done(m)) => {
            let _ = writeln!(out, "<p class=\"note ok\">{}</p>", esc(m));
        }
        Some(Flash::Refused(m)) => {
            let _ = writeln!(out, "<p class=\"note bad\">{}</p>", esc(m));
        }
        Some(Flash::Secret(what, secret)) => {
            let _ = write!(
                out,
                "<div class=\"note secret\"><p>{}</p><p><code id=\"secret\">{}</code></p>\
                 <p>It is shown only now: copy it before you leave this page.</p></div>",
                esc(what),
                esc(secret)
            );
        }
        None => {}
    }
    out.push_str(body);
    out.push_str("</main>\n</body></html>\n");
    out
}

/// The hidden field carrying the session's CSRF token.
pub fn csrf_field(token: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(token)
    )
}

/// A horizontal usage bar (`used` of `quota`), as inline SVG.
pub fn usage_bar(used: u64, quota: Option<u64>) -> String {
    let Some(q) = quota.filter(|q| *q > 0) else {
        return String::from("<span class=\"muted\">no quota</span>");
    };
    let frac = (used as f64 / q as f64).clamp(0.0, 1.0);
    let class = if frac >= 0.9 { "bar full" } else { "bar" };
    format!(
        "<svg class=\"usage\" width=\"160\" height=\"12\" viewBox=\"0 0 160 12\" role=\"img\">\
         <title>{:.0}% used</title><rect class=\"track\" width=\"160\" height=\"12\" rx=\"3\"/>\
         <rect class=\"{class}\" width=\"{:.1}\" height=\"12\" rx=\"3\"/></svg>",
        frac * 100.0,
        frac * 160.0
    )
}

/// One line of a chart: its name, its CSS class (colour) and its points
/// (x = Unix seconds, y = value).
pub struct Series<'a> {
    pub name: &'a str,
    pub class: &'a str,
    pub points: Vec<(i64, f64)>,
}

const W: f64 = 640.0;
const H: f64 = 220.0;
const LEFT: f64 = 70.0;
const BOTTOM: f64 = 24.0;
const TOP: f64 = 10.0;

/// A line chart of `series` over time, as inline SVG; `label` renders a
/// y value for the axis.
pub fn line_chart(title: &str, series: &[Series], label: impl Fn(f64) -> String) -> String {
    let all = || series.iter().flat_map(|s| s.points.iter());
    let mut out = format!(
        "<figure class=\"chart\"><figcaption>{}</figcaption>\
         <svg viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\">",
        esc(title)
    );
    let (Some(x0), Some(x1)) = (all().map(|p| p.0).min(), all().map(|p| p.0).max()) else {
        out.push_str("<text x=\"320\" y=\"110\" class=\"muted\" text-anchor=\"middle\">no samples yet</text></svg></figure>");
        return out;
    };
    let ymax = all().map(|p| p.1).fold(0.0f64, f64::max).max(1.0);
    let xspan = ((x1 - x0) as f64).max(1.0);
    let px = |x: i64| LEFT + (x - x0) as f64 / xspan * (W - LEFT - 10.0);
    let py = |y: f64| TOP + (1.0 - y / ymax) * (H - TOP - BOTTOM);
    // Grid and y labels: 0, half, max.
    for f in [0.0, 0.5, 1.0] {
        let y = py(ymax * f);
        let _ = write!(
            out,
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>\
             <text class=\"axis\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            W - 10.0,
            LEFT - 6.0,
            y + 4.0,
            esc(&label(ymax * f))
        );
    }
    let _ = write!(
        out,
        "<text class=\"axis\" x=\"{LEFT}\" y=\"{}\">{}</text>\
         <text class=\"axis\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
        H - 6.0,
        esc(&time_label(x0)),
        W - 10.0,
        H - 6.0,
        esc(&time_label(x1))
    );
    for s in series {
        let mut d = String::new();
        for (i, (x, y)) in s.points.iter().enumerate() {
            let _ = write!(
                d,
                "{}{:.1},{:.1} ",
                if i == 0 { "M" } else { "L" },
                px(*x),
                py(*y)
            );
        }
        if s.points.len() == 1 {
            let (x, y) = s.points[0];
            let _ = write!(
                out,
                "<circle class=\"{}\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\"/>",
                esc(s.class),
                px(x),
                py(y)
            );
        }
        let _ = write!(
            out,
            "<path class=\"line {}\" d=\"{}\"><title>{}</title></path>",
            esc(s.class),
            d.trim_end(),
            esc(s.name)
        );
    }
    out.push_str("</svg><p class=\"legend\">");
    for s in series {
        let _ = write!(
            out,
            "<span class=\"key {}\">■</span> {} ",
            esc(s.class),
            esc(s.name)
        );
    }
    out.push_str("</p></figure>");
    out
}

/// A UTC date and time for people: `2026-11-28 16:30 UTC`.
pub fn date(unix: i64) -> String {
    format!("{} UTC", time_label(unix))
}

/// A UTC time for an axis: `2026-11-28 16:30`.
fn time_label(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_labels() {
        assert_eq!(esc("<b a='1'>&\""), "&lt;b a=&apos;1&apos;&gt;&amp;&quot;");
        assert_eq!(time_label(0), "1970-01-01 00:00");
        assert_eq!(time_label(1_795_000_000), "2026-11-18 11:06");
        assert_eq!(human(1536), "1.50 KiB");
    }

    #[test]
    fn charts_draw_lines_and_escape_names() {
        let s = [Series {
            name: "<x>",
            class: "logical",
            points: vec![(0, 1.0), (60, 5.0)],
        }];
        let svg = line_chart("t", &s, |v| format!("{v:.0}"));
        assert!(svg.contains("<path class=\"line logical\" d=\"M"));
        assert!(svg.contains("&lt;x&gt;") && !svg.contains("<x>"));
        assert!(line_chart("t", &[], |v| v.to_string()).contains("no samples yet"));
    }
}
