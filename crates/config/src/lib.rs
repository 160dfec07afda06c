//! config (skeleton; filled in by its owner)
