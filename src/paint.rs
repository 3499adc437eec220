//! Colours for terminal output. Styles are `anstyle`'s; whether to use them is
//! `anstream`'s decision for the stream: never when `NO_COLOR` is set, `TERM` is `dumb`
//! or the stream is no terminal (a pipe, a file), always with `CLICOLOR_FORCE`.

use anstyle::{AnsiColor, Style};

pub const RED: Style = AnsiColor::Red.on_default();
pub const RED_BOLD: Style = AnsiColor::Red.on_default().bold();
pub const YELLOW: Style = AnsiColor::Yellow.on_default();
pub const CYAN: Style = AnsiColor::Cyan.on_default();
pub const DIM: Style = Style::new().dimmed();
pub const BOLD: Style = Style::new().bold();

/// Paints text, or leaves it plain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Paint(bool);

impl Paint {
    /// No colours.
    pub const PLAIN: Paint = Paint(false);

    /// Colours when standard output takes them.
    pub fn stdout() -> Paint {
        Paint(anstream::AutoStream::choice(&std::io::stdout()) != anstream::ColorChoice::Never)
    }

    /// Colours when standard error takes them.
    pub fn stderr() -> Paint {
        Paint(anstream::AutoStream::choice(&std::io::stderr()) != anstream::ColorChoice::Never)
    }

    pub fn is_on(self) -> bool {
        self.0
    }

    pub fn paint(self, style: Style, text: &str) -> String {
        if self.0 {
            format!("{style}{text}{style:#}")
        } else {
            text.to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_is_the_text_and_colour_wraps_it_in_a_style_and_a_reset() {
        assert_eq!(Paint::PLAIN.paint(RED, "x"), "x");
        assert_eq!(Paint(true).paint(RED, "x"), "\x1b[31mx\x1b[0m");
    }
}
