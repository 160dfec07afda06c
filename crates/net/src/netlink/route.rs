//! IPv4 route operations (any table).

use std::net::Ipv4Addr;

use futures_util::TryStreamExt;
use ipnet::Ipv4Net;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use rtnetlink::RouteMessageBuilder;

use super::{NetlinkError, NetlinkHandle, Route, RouteKind, Scope, ok_if_missing, req_err};

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

/// Converts a kernel route message (IPv4 only) into a [`Route`].
fn parse_route(msg: &RouteMessage) -> Option<Route> {
    if msg.header.address_family != AddressFamily::Inet {
        return None;
    }
    let mut table = u32::from(msg.header.table);
    let mut dst = Ipv4Addr::UNSPECIFIED;
    let mut gateway = None;
    let mut oif = None;
    let mut pref_src = None;
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(RouteAddress::Inet(a)) => dst = *a,
            RouteAttribute::Gateway(RouteAddress::Inet(a)) => gateway = Some(*a),
            RouteAttribute::PrefSource(RouteAddress::Inet(a)) => pref_src = Some(*a),
            RouteAttribute::Oif(i) => oif = Some(*i),
            _ => {}
        }
    }
    Some(Route {
        table,
        dst: Ipv4Net::new(dst, msg.header.destination_prefix_length).ok()?,
        gateway,
        oif,
        scope: Scope::from_raw(u8::from(msg.header.scope)),
        pref_src,
        kind: kind_from(msg.header.kind),
    })
}

/// Builds the request message for `route`; `for_delete` leaves the protocol unset so the
/// kernel matches routes of any origin (e.g. `proto kernel` subnet routes).
fn build_route(route: &Route, for_delete: bool) -> RouteMessage {
    let mut b = RouteMessageBuilder::<Ipv4Addr>::new()
        .table_id(route.table)
        .scope(RouteScope::from(route.scope.raw()))
        .kind(kind_to(route.kind))
        .protocol(if for_delete {
            RouteProtocol::Unspec
        } else {
            RouteProtocol::Boot
        });
    if route.dst.prefix_len() > 0 {
        b = b.destination_prefix(route.dst.addr(), route.dst.prefix_len());
    }
    if let Some(gw) = route.gateway {
        b = b.gateway(gw);
    }
    if let Some(oif) = route.oif {
        b = b.output_interface(oif);
    }
    if let Some(src) = route.pref_src {
        b = b.pref_source(src);
    }
    b.build()
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
    /// IPv4 routes, of one table or of all tables.
    pub async fn routes(&self, table: Option<u32>) -> Result<Vec<Route>, NetlinkError> {
        let query = RouteMessageBuilder::<Ipv4Addr>::new().build();
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
