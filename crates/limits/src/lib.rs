//! limits (skeleton; filled in by its owner)
