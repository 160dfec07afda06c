//! Route operations of both families (any table; the family of a [`Route`] is that of its
//! destination).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures_util::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use rtnetlink::RouteMessageBuilder;

use super::rule::address_family;
use super::{Family, NetlinkError, NetlinkHandle, Route, RouteKind, Scope, ok_if_missing, req_err};

fn kind_from(t: RouteType) -> RouteKind {
    match t {
        RouteType::Unicast => RouteKind::Unicast,
        RouteType::Local => RouteKind::Local,
        RouteType::Broadcast => RouteKind::Broadcast,
        other => RouteKind::Other(u8::from(other)),
    }
}

fn kind_to(k: RouteKind) -> RouteType {
    match k {
        RouteKind::Unicast => RouteType::Unicast,
        RouteKind::Local => RouteType::Local,
        RouteKind::Broadcast => RouteType::Broadcast,
        RouteKind::Other(v) => RouteType::from(v),
    }
}

/// Converts a kernel route message (IPv4 or IPv6) into a [`Route`].
fn parse_route(msg: &RouteMessage) -> Option<Route> {
    let unspecified = match msg.header.address_family {
        AddressFamily::Inet => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => return None,
    };
    let mut table = u32::from(msg.header.table);
    let mut dst = unspecified;
    let mut gateway = None;
    let mut oif = None;
    let mut pref_src = None;
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(a) => dst = ip_of(a)?,
            RouteAttribute::Gateway(a) => gateway = ip_of(a),
            RouteAttribute::PrefSource(a) => pref_src = ip_of(a),
            RouteAttribute::Oif(i) => oif = Some(*i),
            _ => {}
        }
    }
    Some(Route {
        table,
        dst: IpNet::new(dst, msg.header.destination_prefix_length).ok()?,
        gateway,
        oif,
        scope: Scope::from_raw(u8::from(msg.header.scope)),
        pref_src,
        kind: kind_from(msg.header.kind),
    })
}

fn ip_of(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(a) => Some(IpAddr::V4(*a)),
        RouteAddress::Inet6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

/// Builds the request message for `route` (of its destination's family); `for_delete`
/// leaves the protocol unset so the kernel matches routes of any origin (e.g. `proto
/// kernel` subnet routes).
fn build_route(route: &Route, for_delete: bool) -> RouteMessage {
    let mut b = RouteMessageBuilder::<IpAddr>::new()
        .table_id(route.table)
        .scope(RouteScope::from(route.scope.raw()))
        .kind(kind_to(route.kind))
        .protocol(if for_delete {
            RouteProtocol::Unspec
        } else {
            RouteProtocol::Boot
        });
    if let Some(oif) = route.oif {
        b = b.output_interface(oif);
    }
    let mut msg = b.build();
    msg.header.address_family = address_family(route.family());
    if route.dst.prefix_len() > 0 {
        msg.header.destination_prefix_length = route.dst.prefix_len();
        msg.attributes
            .push(RouteAttribute::Destination(route.dst.addr().into()));
    }
    if let Some(gw) = route.gateway {
        msg.attributes.push(RouteAttribute::Gateway(gw.into()));
    }
    if let Some(src) = route.pref_src {
        msg.attributes.push(RouteAttribute::PrefSource(src.into()));
    }
    msg
}

fn describe(route: &Route) -> String {
    let mut s = format!("{}", route.dst);
    if let Some(gw) = route.gateway {
        s.push_str(&format!(" via {gw}"));
    }
    if let Some(oif) = route.oif {
        s.push_str(&format!(" dev #{oif}"));
    }
    s.push_str(&format!(" scope {:?} table {}", route.scope, route.table));
    s
}

impl NetlinkHandle {
    /// Routes of `family`, of one table or of all tables.
    pub async fn routes(
        &self,
        family: Family,
        table: Option<u32>,
    ) -> Result<Vec<Route>, NetlinkError> {
        let query = match family {
            Family::V4 => RouteMessageBuilder::<Ipv4Addr>::new().build(),
            Family::V6 => RouteMessageBuilder::<Ipv6Addr>::new().build(),
        };
        let msgs: Vec<RouteMessage> = self
            .handle
            .route()
            .get(query)
            .execute()
            .try_collect()
            .await
            .map_err(req_err("list routes"))?;
        Ok(msgs
            .iter()
            .filter_map(parse_route)
            .filter(|r| table.is_none_or(|t| r.table == t))
            .collect())
    }

    /// Adds `route`; fails with EEXIST when an equal route exists (`ip route add`).
    pub async fn add_route(&self, route: &Route) -> Result<(), NetlinkError> {
        self.handle
            .route()
            .add(build_route(route, false))
            .execute()
            .await
            .map_err(req_err(format!("add route {}", describe(route))))
    }

    /// Adds or replaces `route` (`ip route replace`).
    pub async fn replace_route(&self, route: &Route) -> Result<(), NetlinkError> {
        self.handle
            .route()
            .add(build_route(route, false))
            .replace()
            .execute()
            .await
            .map_err(req_err(format!("replace route {}", describe(route))))
    }

    /// Deletes `route`; `Ok(false)` when no such route exists.
    pub async fn delete_route(&self, route: &Route) -> Result<bool, NetlinkError> {
        let res = self
            .handle
            .route()
            .del(build_route(route, true))
            .execute()
            .await
            .map_err(req_err(format!("delete route {}", describe(route))));
        ok_if_missing(res)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_of_both_families_round_trip_through_their_kernel_message() {
        let v6: IpAddr = "2001:db8:0:1::5".parse().unwrap();
        let gw6: IpAddr = "fe80::1".parse().unwrap();
        let v4: IpAddr = "10.0.1.5".parse().unwrap();
        for route in [
            Route::link_scope(254, Route::host(v6), 7),
            Route::default_via(254, gw6, 7),
            Route::link_scope(3, Route::host(v4), 2),
            Route::default_via(3, Ipv4Addr::new(10, 0, 0, 1), 2),
        ] {
            let msg = build_route(&route, false);
            assert_eq!(msg.header.address_family, address_family(route.family()));
            assert_eq!(parse_route(&msg), Some(route));
        }
    }
}
