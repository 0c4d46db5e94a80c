//! Shared helpers for the ringws benchmark suite (inputs, sizes). Never a dependency of the library.
