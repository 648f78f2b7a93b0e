//! `GET /denials?profile=NAME&limit=N&after=ID&origin=kernel|userspace`: the monitor's recent records as
//! JSON. By default the kernel's records only; `origin=userspace` the records the kernel did not make
//! (USER_AVC), which the monitor keeps in a ring of their own and never counts as denials.
//!
//! Read-only, like every endpoint of the agent. Merge [`router`] into the agent's router.

use super::monitor::{DenialsResponse, DenialsView};
use super::ring::Query as RingQuery;
use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::routing::get;

/// The `/denials` route, its state applied (so it merges into any router).
pub fn router(view: DenialsView) -> Router {
    Router::new().route("/denials", get(get_denials)).with_state(view)
}

/// The handler: `profile` filters by profile (and its children); without `after` the page holds the most
/// recent records, with `after=ID` the oldest ones past that id (follow `next_after` while `more` is true
/// to read the ring page by page). `limit` sets the page size, capped at [`super::ring::PAGE_MAX`]
/// records and [`super::ring::PAGE_BYTES`] bytes. Records are oldest first.
pub async fn get_denials(State(view): State<DenialsView>, Query(q): Query<RingQuery>) -> Json<DenialsResponse> {
    // The ring lock is held only to clone at most `capacity` entries: short enough for an async handler.
    Json(view.response(&q))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::ring::RingOrigin;

    #[test]
    fn query_string_and_handler() {
        let uri: axum::http::Uri = "/denials?profile=web&limit=5&after=7".parse().unwrap();
        let Query(q) = Query::<RingQuery>::try_from_uri(&uri).unwrap();
        assert_eq!(q, RingQuery { profile: Some("web".into()), limit: Some(5), after: Some(7), origin: RingOrigin::Kernel });
        let Query(q) = Query::<RingQuery>::try_from_uri(&"/denials?origin=userspace".parse().unwrap()).unwrap();
        assert_eq!(q.origin, RingOrigin::Userspace);
        assert!(
            Query::<RingQuery>::try_from_uri(&"/denials?origin=forged".parse().unwrap()).is_err(),
            "an unknown origin is a 400"
        );
        let Query(q) = Query::<RingQuery>::try_from_uri(&"/denials".parse().unwrap()).unwrap();
        assert_eq!(q, RingQuery::default());
        assert!(Query::<RingQuery>::try_from_uri(&"/denials?limit=many".parse().unwrap()).is_err(), "a bad limit is a 400");

        let view = DenialsView::disabled();
        let _router = router(view.clone());
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let Json(body) = rt.block_on(get_denials(State(view), Query(RingQuery::default())));
        let v = serde_json::to_value(body).unwrap();
        assert_eq!(v["source"]["source"], "off");
        assert_eq!(v["records"], serde_json::json!([]));
    }
}
