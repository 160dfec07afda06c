//! rpc (skeleton)
