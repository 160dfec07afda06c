//! `egress-cni` entry point: the shared CNI skeleton around [`egress_cni::run`].

fn main() {
    cni::skel::plugin_main(egress_cni::run)
}
