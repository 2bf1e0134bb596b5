//! One subscription of a session, online or offline, changed by the operator on the session's
//! owner, as the client's own SUBSCRIBE / UNSUBSCRIBE would be: the registry first (committed
//! through Raft, so that every node routes to the session), then the owner's broker (the
//! session, its index, its store). Any node takes the request (`ClusterPort::session_subscription`
//! relays it to the owner the registry names); on a server that is not a cluster node, its
//! broker alone.
//!
//! - `PUT /api/v1/sessions/{client_id}/subscriptions/{filter}` with an optional JSON body
//!   `{"qos": 0|1|2, "no_local": bool, "retain_as_published": bool, "retain_handling":
//!   0|1|2}` (defaults: 0, false, false, 0): subscribe, or replace the options of the
//!   subscription to that filter. Checked as any session's subscriptions are: the topic
//!   limits, `acl.denied_filters`, `limits.max_subscriptions` (a refusal is a 400 saying
//!   which). The ACL's rules for the client are not asked (the operator is not the client);
//!   they apply to every message delivered. No retained message is sent: retained messages
//!   answer a client's own SUBSCRIBE, and none follow later, also not at its next connect.
//! - `DELETE /api/v1/sessions/{client_id}/subscriptions/{filter}`: unsubscribe (404 when the
//!   session does not hold that filter).
//!
//! The filter is percent-encoded in the path (`#` as `%23`, `+` as `%2B`, `/` as `%2F`). 404:
//! no such session. 503: its owner could not be reached, the change did not commit, or the
//! session is moving between nodes (ask again).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_codec::{MqttString, QoS, RetainHandling, SubscriptionOptions, TopicFilter};
use berth_core::broker::{SubscriptionAnswer, SubscriptionChange};
use berth_core::{ClientId, SubscribeRefusal};
use serde_json::json;

use super::HttpState;
use super::admin::error;
use super::body::{Fields, field_error};
use super::registry::Refused;
use super::sessions::failed;
use crate::cluster_port::{ADMIN_COMMIT_WAIT, AdminFailure};

const FIELDS: &[&str] = &["qos", "no_local", "retain_as_published", "retain_handling"];

/// The subscription options of a `PUT` body.
pub(super) fn options(body: &Bytes) -> Result<SubscriptionOptions, Refused> {
    let fields = Fields::parse(body, FIELDS)?;
    let qos = fields
        .integer("qos", 0, 2)?
        .and_then(|n| u8::try_from(n).ok())
        .and_then(QoS::from_u8)
        .unwrap_or(QoS::AtMostOnce);
    let retain_handling = fields
        .integer("retain_handling", 0, 2)?
        .and_then(|n| u8::try_from(n).ok())
        .and_then(RetainHandling::from_u8)
        .unwrap_or_default();
    Ok(SubscriptionOptions {
        qos,
        no_local: fields.boolean("no_local")?.unwrap_or(false),
        retain_as_published: fields.boolean("retain_as_published")?.unwrap_or(false),
        retain_handling,
    })
}

/// The path's client id and filter; `Err`: the refusal (a client id that no session can
/// have is a 404, a filter that is not one a 400).
fn target(client_id: &str, filter: &str) -> Result<(ClientId, TopicFilter), Refused> {
    let Ok(client) = MqttString::new(client_id) else {
        return Err(Refused(StatusCode::NOT_FOUND, "no such session".to_owned()));
    };
    let filter = TopicFilter::parse(filter)
        .map_err(|why| field_error("filter", format!("not a topic filter ({why})")))?;
    Ok((ClientId::new(client), filter))
}

/// The owner's answer to `change` of `client`'s session, wherever the owner is.
async fn ask(
    state: &HttpState,
    client: ClientId,
    change: SubscriptionChange,
) -> Result<SubscriptionAnswer, AdminFailure> {
    super::sessions::ask_owner(
        state,
        ADMIN_COMMIT_WAIT,
        state
            .cluster
            .session_subscription(client.clone(), change.clone()),
        |broker| async move {
            broker
                .change_subscription_within(client, change, crate::ADMIN_WAIT)
                .await
        },
    )
    .await
}

/// Why a filter was refused, naming the setting.
fn refusal(refusal: SubscribeRefusal) -> Response {
    let why = match refusal {
        SubscribeRefusal::Limit(limit) => format!("over limits.{}", limit.label()),
        SubscribeRefusal::NotAuthorized => "denied by acl.denied_filters".to_owned(),
    };
    field_error("filter", why).into_response()
}

pub(super) async fn subscribe(
    State(state): State<HttpState>,
    Path((client_id, filter)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let options = match options(&body) {
        Ok(options) => options,
        Err(refused) => return refused.into_response(),
    };
    let (client, filter) = match target(&client_id, &filter) {
        Ok(target) => target,
        Err(refused) => return refused.into_response(),
    };
    let change = SubscriptionChange::Subscribe {
        filter: filter.clone(),
        options,
    };
    match ask(&state, client, change).await {
        Ok(SubscriptionAnswer::Subscribed { replaced }) => Json(json!({
            "client_id": client_id,
            "filter": filter.as_str(),
            "qos": options.qos.as_u8(),
            "no_local": options.no_local,
            "retain_as_published": options.retain_as_published,
            "retain_handling": options.retain_handling as u8,
            "replaced": replaced,
        }))
        .into_response(),
        Ok(SubscriptionAnswer::Refused(refused)) => refusal(refused),
        Ok(other @ SubscriptionAnswer::Unsubscribed { .. }) => mismatched(other),
        Err(failure) => failed(failure),
    }
}

pub(super) async fn unsubscribe(
    State(state): State<HttpState>,
    Path((client_id, filter)): Path<(String, String)>,
) -> Response {
    let (client, filter) = match target(&client_id, &filter) {
        Ok(target) => target,
        Err(refused) => return refused.into_response(),
    };
    let change = SubscriptionChange::Unsubscribe {
        filter: filter.clone(),
    };
    match ask(&state, client, change).await {
        Ok(SubscriptionAnswer::Unsubscribed { existed: true }) => Json(json!({
            "client_id": client_id,
            "filter": filter.as_str(),
            "unsubscribed": true,
        }))
        .into_response(),
        Ok(SubscriptionAnswer::Unsubscribed { existed: false }) => error(
            StatusCode::NOT_FOUND,
            "the session holds no subscription to this filter",
        ),
        Ok(other) => mismatched(other),
        Err(failure) => failed(failure),
    }
}

/// An answer of another kind than the request's (a peer at odds with this node).
fn mismatched(answer: SubscriptionAnswer) -> Response {
    Refused(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("the owner answered another request: {answer:?}"),
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn options_default_and_are_checked_by_name() {
        let defaults = options(&Bytes::new()).unwrap();
        assert_eq!(defaults, SubscriptionOptions::new(QoS::AtMostOnce));
        let set = options(&Bytes::from_static(
            br#"{"qos": 1, "no_local": true, "retain_as_published": true, "retain_handling": 2}"#,
        ))
        .unwrap();
        assert_eq!(set.qos, QoS::AtLeastOnce);
        assert!(set.no_local && set.retain_as_published);
        assert_eq!(set.retain_handling, RetainHandling::DoNotSend);
        for (body, field) in [
            (r#"{"qos": 3}"#, "qos"),
            (r#"{"retain_handling": 3}"#, "retain_handling"),
            (r#"{"no_local": "yes"}"#, "no_local"),
            (r#"{"subscription_id": 1}"#, "subscription_id"),
        ] {
            let refused = options(&Bytes::copy_from_slice(body.as_bytes())).unwrap_err();
            assert!(
                refused.1.starts_with(&format!("{field}: ")),
                "{}",
                refused.1
            );
        }
        assert!(target("dev", "a/+/#").is_ok());
        assert!(target("dev", "a/#/b").is_err());
    }
}
