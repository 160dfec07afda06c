//! Calls to the network policy agent (`rpc.NPBackend`, served by aws-network-policy-agent on
//! `unix:///var/run/aws-node/npa.sock`), as upstream's `cmdAdd`/`cmdDel` make them: only
//! when ipamd's reply names a `NetworkPolicyMode` (even `none`). After ADD wired the pod,
//! `EnforceNpToPod`; any failure fails ADD and keeps the address (kubelet's DEL releases it).
//! After DEL, `DeletePodNp`; an agent that cannot be reached fails DEL, a refusal is logged.

use std::time::Duration;

use rpc::{DeleteNpRequest, EnforceNpRequest, NpBackendClient};

use crate::error::CniError;

/// How long to wait for the agent's socket (upstream's blocking dial: 2 s).
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(2);

/// The agent's gRPC target (`NPA_GRPC_SOCKET`, ours, overrides it for tests and the demo).
pub fn npa_target(get: impl Fn(&str) -> Option<String>) -> String {
    match get("NPA_GRPC_SOCKET").filter(|s| !s.is_empty()) {
        Some(path) => format!("unix://{path}"),
        None => rpc::DEFAULT_NPA_ADDR.to_string(),
    }
}

/// The pod the policies are for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
}

async fn dial(target: &str) -> Result<NpBackendClient<tonic::transport::Channel>, String> {
    rpc::client::connect(target, Some(DIAL_TIMEOUT))
        .await
        .map(NpBackendClient::new)
        .map_err(|e| format!("the network policy agent is not reachable at {target}: {e}"))
}

/// `EnforceNpToPod` with `mode` for a pod with `interfaces` addresses; every failure is an
/// error ("failed to setup network policy", as upstream says it).
pub async fn enforce(
    target: &str,
    pod: &PodRef<'_>,
    mode: &str,
    interfaces: usize,
) -> Result<(), CniError> {
    let fail = |why: String| {
        CniError::network_policy(format!(
            "add cmd: failed to setup network policy for {}/{}: {why}",
            pod.namespace, pod.name
        ))
    };
    let mut client = dial(target).await.map_err(fail)?;
    let req = EnforceNpRequest {
        k8s_pod_name: pod.name.to_string(),
        k8s_pod_namespace: pod.namespace.to_string(),
        network_policy_mode: mode.to_string(),
        interface_count: i32::try_from(interfaces).unwrap_or(i32::MAX),
    };
    let reply = client
        .enforce_np_to_pod(req)
        .await
        .map_err(|s| fail(format!("EnforceNpToPod: {:?}: {}", s.code(), s.message())))?;
    if !reply.into_inner().success {
        return Err(fail("the agent answered Success=false".into()));
    }
    Ok(())
}

/// `DeletePodNp`: an agent that cannot be reached is an error; a failed call or a refusal
/// is logged only (upstream).
pub async fn delete(target: &str, pod: &PodRef<'_>) -> Result<(), CniError> {
    let mut client = dial(target).await.map_err(|why| {
        CniError::network_policy(format!(
            "del cmd: failed to delete the network policy state of {}/{}: {why}",
            pod.namespace, pod.name
        ))
    })?;
    let req = DeleteNpRequest {
        k8s_pod_name: pod.name.to_string(),
        k8s_pod_namespace: pod.namespace.to_string(),
    };
    match client.delete_pod_np(req).await {
        Ok(r) if r.get_ref().success => {}
        Ok(_) => tracing::warn!(
            pod = pod.name,
            "DeletePodNp: the agent answered Success=false"
        ),
        Err(s) => tracing::warn!(
            pod = pod.name,
            "DeletePodNp: {:?}: {}",
            s.code(),
            s.message()
        ),
    }
    Ok(())
}

/// The pod named in `CNI_ARGS`.
pub(crate) fn pod_ref(env: &crate::conf::CniEnv) -> PodRef<'_> {
    PodRef {
        name: env.arg("K8S_POD_NAME"),
        namespace: env.arg("K8S_POD_NAMESPACE"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_socket_is_upstreams_unless_overridden() {
        assert_eq!(npa_target(|_| None), "unix:///var/run/aws-node/npa.sock");
        assert_eq!(npa_target(|_| Some(String::new())), rpc::DEFAULT_NPA_ADDR);
        assert_eq!(
            npa_target(|k| (k == "NPA_GRPC_SOCKET").then(|| "/tmp/npa.sock".into())),
            "unix:///tmp/npa.sock"
        );
    }

    #[tokio::test]
    async fn an_agent_that_is_not_there_fails_add_and_del_clearly() {
        let pod = PodRef {
            name: "web",
            namespace: "default",
        };
        let target = "unix:///nonexistent/npa.sock";
        let e = enforce(target, &pod, "standard", 1).await.unwrap_err();
        assert_eq!(e.code, 104);
        assert!(
            e.msg
                .contains("failed to setup network policy for default/web"),
            "{e}"
        );
        let e = delete(target, &pod).await.unwrap_err();
        assert!(
            e.msg
                .contains("not reachable at unix:///nonexistent/npa.sock"),
            "{e}"
        );
    }
}
