//! ipam (skeleton; filled in by its owner)
