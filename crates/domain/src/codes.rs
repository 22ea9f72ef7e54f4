//! Stable codes for the domain's enums: one macro declares an enum together with the
//! text each variant is stored and reported as, so the conversion both ways lives in
//! one place (the database, the API and the logs all use these codes).

/// Declares an enum whose variants each have a stable code, with `ALL`, `code()` and
/// `from_code()`:
///
/// ```
/// domain::coded_enum! {
///     /// What colour.
///     #[derive(Debug, Clone, Copy, PartialEq, Eq)]
///     pub enum Colour { Red = "RED", Blue = "BLUE" }
/// }
/// assert_eq!(Colour::from_code("RED"), Some(Colour::Red));
/// assert_eq!(Colour::Blue.code(), "BLUE");
/// ```
#[macro_export]
macro_rules! coded_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $code:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: [$name; [$( stringify!($variant) ),+].len()] = [$( $name::$variant ),+];

            /// The stable code (database, API, logs).
            pub fn code(self) -> &'static str {
                match self {
                    $( $name::$variant => $code ),+
                }
            }

            /// The variant with this code, if any.
            pub fn from_code(code: &str) -> Option<Self> {
                match code {
                    $( $code => Some($name::$variant), )+
                    _ => None,
                }
            }
        }
    };
}
