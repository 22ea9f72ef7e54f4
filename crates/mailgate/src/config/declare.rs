//! How a setting is declared: the `settings!` macro turns one list (name, type, default,
//! its check, one line of description) into the [`Config`](super::Config) struct, its
//! `Default`, the checks each setting makes of itself, and the table of settings
//! README.md's configuration section is held to. Also the checks a declaration may name
//! and how a default is shown.

use std::net::SocketAddr;
use std::path::PathBuf;

use secrecy::SecretString;

/// One setting as README.md's configuration table shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// `MAILGATE_<NAME>`.
    pub name: String,
    /// The default in the table's words: the value in backticks, `–` for none, or a few
    /// words where the default is worked out at start (`generated in development`).
    pub default: String,
    /// The declaration's doc comment on one line.
    pub description: String,
    /// `default` is the default value's own text (not words declared with `shown`).
    pub default_is_the_value: bool,
}

/// `MAILGATE_<FIELD>` for a field of [`Config`](super::Config).
pub fn env_name(field: &str) -> String {
    format!("MAILGATE_{}", field.to_ascii_uppercase())
}

/// Doc comment lines joined into one.
pub fn one_line(lines: &[&str]) -> String {
    lines.iter().map(|l| l.trim()).collect::<Vec<_>>().join(" ")
}

/// Declares every setting once; see `settings.rs` for the one use. Each entry:
///
/// ```text
/// /// One line (or a few) of description: the field's doc comment and the table's text.
/// #[serde(deserialize_with = "port_list")]   // optional: how text becomes the value
/// pub name: Type = default_expression, shown "words", check at_least(1);
/// ```
///
/// `shown` (the default in README.md's words) is for defaults worked out at start;
/// without it the default value itself is shown ([`DefaultText`]). `check` names one of
/// the checks below; the message is `MAILGATE_<NAME> <what the check says>`. The `derived`
/// block holds what start-up works out and no variable sets (`#[serde(skip)]`).
macro_rules! settings {
    (
        $(#[doc = $struct_doc:literal])*
        pub struct Config {
            $(
                $(#[doc = $doc:literal])+
                $(#[serde($($serde:tt)*)])?
                pub $name:ident: $ty:ty = $default:expr
                $(, shown $shown:literal)?
                $(, check $check:expr)?;
            )+
        }
        derived {
            $(
                $(#[doc = $derived_doc:literal])+
                pub $derived:ident: $derived_ty:ty = $derived_default:expr;
            )*
        }
    ) => {
        $(#[doc = $struct_doc])*
        #[derive(Debug, Clone, serde::Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct Config {
            $(
                $(#[doc = $doc])+
                $(#[serde($($serde)*)])?
                pub $name: $ty,
            )+
            $(
                $(#[doc = $derived_doc])+
                #[serde(skip)]
                pub $derived: $derived_ty,
            )*
        }

        impl Default for Config {
            fn default() -> Self {
                Self {
                    $($name: $default,)+
                    $($derived: $derived_default,)*
                }
            }
        }

        impl Config {
            /// Every `MAILGATE_*` setting the binary reads, in the order declared, with
            /// its default and description. README.md's configuration table names exactly
            /// these, with these defaults (a test holds it to that).
            pub fn settings() -> Vec<$crate::config::declare::Setting> {
                let defaults = Self::default();
                vec![$(
                    $crate::config::declare::Setting {
                        name: $crate::config::declare::env_name(stringify!($name)),
                        default: $crate::config::declare::shown_default!(defaults.$name $(, $shown)?),
                        description: $crate::config::declare::one_line(&[$($doc),+]),
                        default_is_the_value: $crate::config::declare::shown_default!(@derived $(, $shown)?),
                    },
                )+]
            }

            /// The check declared with each setting, in the order declared; the first
            /// that fails, naming its setting.
            pub(super) fn check_each(&self) -> anyhow::Result<()> {
                $($(
                    $crate::config::declare::Check::check(&$check, &self.$name).map_err(|what| {
                        anyhow::anyhow!("{} {what}", $crate::config::declare::env_name(stringify!($name)))
                    })?;
                )?)+
                Ok(())
            }
        }
    };
}
pub(crate) use settings;

/// The default as shown: the declared words, or the value's own text.
macro_rules! shown_default {
    (@derived) => {
        true
    };
    (@derived, $shown:literal) => {
        false
    };
    ($value:expr) => {
        $crate::config::declare::DefaultText::default_text(&$value)
    };
    ($value:expr, $shown:literal) => {
        ::std::string::String::from($shown)
    };
}
pub(crate) use shown_default;

/// How a default value is shown in README.md: in backticks, as it would be written in
/// the environment; `–` for none.
pub trait DefaultText {
    fn default_text(&self) -> String;
}

macro_rules! shown_as_displayed {
    ($($ty:ty),*) => {$(
        impl DefaultText for $ty {
            fn default_text(&self) -> String {
                format!("`{self}`")
            }
        }
    )*};
}
shown_as_displayed!(u16, u32, u64, usize, bool, String, SocketAddr);

impl DefaultText for PathBuf {
    fn default_text(&self) -> String {
        format!("`{}`", self.display())
    }
}

impl DefaultText for SecretString {
    /// A secret has no default to show; one declared would be a mistake the README test
    /// makes visible.
    fn default_text(&self) -> String {
        "a secret".to_owned()
    }
}

impl<T: DefaultText> DefaultText for Option<T> {
    fn default_text(&self) -> String {
        self.as_ref().map_or_else(|| "–".to_owned(), DefaultText::default_text)
    }
}

/// An item of a comma-separated list setting, as written in it.
pub trait ListItem {
    fn item_text(&self) -> String;
}

impl ListItem for u16 {
    fn item_text(&self) -> String {
        self.to_string()
    }
}

impl ListItem for SocketAddr {
    fn item_text(&self) -> String {
        self.to_string()
    }
}

impl<T: ListItem> DefaultText for Vec<T> {
    fn default_text(&self) -> String {
        if self.is_empty() {
            return "–".to_owned();
        }
        let items: Vec<String> = self.iter().map(ListItem::item_text).collect();
        format!("`{}`", items.join(","))
    }
}

/// A check one setting makes of its own value: `Err` says what is wrong after the
/// setting's name (`must be at least 3`).
pub trait Check<T> {
    fn check(&self, value: &T) -> Result<(), String>;
}

/// A whole number a check can compare.
pub trait Number: Copy {
    fn number(self) -> u64;
}

impl Number for u32 {
    fn number(self) -> u64 {
        u64::from(self)
    }
}

impl Number for u64 {
    fn number(self) -> u64 {
        self
    }
}

impl Number for usize {
    fn number(self) -> u64 {
        u64::try_from(self).unwrap_or(u64::MAX)
    }
}

/// `must be at least N`.
#[derive(Debug, Clone, Copy)]
pub struct AtLeast(pub u64);

pub fn at_least(min: u64) -> AtLeast {
    AtLeast(min)
}

impl<T: Number> Check<T> for AtLeast {
    fn check(&self, value: &T) -> Result<(), String> {
        if value.number() < self.0 {
            return Err(format!("must be at least {}", self.0));
        }
        Ok(())
    }
}

/// `must be A to B` (both included).
#[derive(Debug, Clone, Copy)]
pub struct Between(pub u64, pub u64);

pub fn between(min: u64, max: u64) -> Between {
    Between(min, max)
}

impl<T: Number> Check<T> for Between {
    fn check(&self, value: &T) -> Result<(), String> {
        if !(self.0..=self.1).contains(&value.number()) {
            return Err(format!("must be {} to {}", self.0, self.1));
        }
        Ok(())
    }
}

/// `must not be empty` (blanks count as empty).
#[derive(Debug, Clone, Copy)]
pub struct NotBlank;

pub fn not_blank() -> NotBlank {
    NotBlank
}

impl Check<String> for NotBlank {
    fn check(&self, value: &String) -> Result<(), String> {
        if value.trim().is_empty() {
            return Err("must not be empty".to_owned());
        }
        Ok(())
    }
}

/// A check whose message adds a reason in parentheses.
#[derive(Debug, Clone, Copy)]
pub struct Because<C>(pub C, pub &'static str);

impl<T, C: Check<T>> Check<T> for Because<C> {
    fn check(&self, value: &T) -> Result<(), String> {
        self.0.check(value).map_err(|what| format!("{what} ({})", self.1))
    }
}

impl AtLeast {
    pub fn because(self, reason: &'static str) -> Because<Self> {
        Because(self, reason)
    }
}
