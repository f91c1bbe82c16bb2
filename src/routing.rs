//! Path normalisation and first-match route lookup. Pure: no I/O, no async.

pub mod normalize;
pub mod table;

pub use normalize::{NormalPath, PathError, normalize};
pub use table::{RouteMatch, RouteTable};
