//! The page's files, embedded in the binary: the viewer works offline and needs no build
//! step. They are hand-written HTML, CSS and JavaScript modules, served as they are.

pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static str,
}

const JS: &str = "text/javascript; charset=utf-8";

pub const ASSETS: &[Asset] = &[
    Asset {
        path: "",
        content_type: "text/html; charset=utf-8",
        body: include_str!("assets/index.html"),
    },
    Asset {
        path: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("assets/style.css"),
    },
    Asset {
        path: "icon.svg",
        content_type: "image/svg+xml",
        body: include_str!("assets/icon.svg"),
    },
    Asset {
        path: "app.js",
        content_type: JS,
        body: include_str!("assets/app.js"),
    },
    Asset {
        path: "api.js",
        content_type: JS,
        body: include_str!("assets/api.js"),
    },
    Asset {
        path: "dom.js",
        content_type: JS,
        body: include_str!("assets/dom.js"),
    },
    Asset {
        path: "vlist.js",
        content_type: JS,
        body: include_str!("assets/vlist.js"),
    },
    Asset {
        path: "sessions.js",
        content_type: JS,
        body: include_str!("assets/sessions.js"),
    },
    Asset {
        path: "run.js",
        content_type: JS,
        body: include_str!("assets/run.js"),
    },
    Asset {
        path: "step.js",
        content_type: JS,
        body: include_str!("assets/step.js"),
    },
    Asset {
        path: "diff.js",
        content_type: JS,
        body: include_str!("assets/diff.js"),
    },
];

/// The file at `path` (relative to the viewer's root; `""` and `index.html` are the page).
pub fn get(path: &str) -> Option<&'static Asset> {
    let path = if path == "index.html" { "" } else { path };
    ASSETS.iter().find(|a| a.path == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_scripts_only_from_files() {
        let page = get("").unwrap().body;
        // No inline script: every <script> names a file (the CSP would block any other).
        for (i, _) in page.match_indices("<script") {
            let tag = &page[i..i + page[i..].find('>').unwrap()];
            assert!(tag.contains("src="), "inline script in index.html: {tag}");
        }
        let handler = regex::Regex::new(r"\son[a-z]+\s*=").unwrap();
        assert!(
            !handler.is_match(page),
            "inline event handler in index.html"
        );
        for a in ASSETS.iter().filter(|a| a.path.ends_with(".js")) {
            assert!(
                !a.body.contains("innerHTML") && !a.body.contains("insertAdjacentHTML"),
                "{} builds markup from strings",
                a.path
            );
            assert!(!a.body.contains("eval("), "{} calls eval", a.path);
        }
    }
}
