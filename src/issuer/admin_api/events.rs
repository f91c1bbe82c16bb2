//! The endpoints of the event outbox: `/events`, listed newest first and
//! filtered by status (`failed` for the dead letters), one event, and the
//! redelivery of a failed one.

use http::StatusCode;

use super::body::{RedeliverBody, read_optional_json};
use super::query::{Cut, DEFAULT_LIMIT, EventQuery, Listing, PageQuery, Params, event_key};
use super::{Answer, ApiError, Call, Reply};
use crate::issuer::manage;
use crate::issuer::manage::views::EventView;
use crate::issuer::store::EventPosition;

/// `GET /events`: the events, newest first.
#[utoipa::path(
    get,
    path = "/admin/v1/events",
    tag = "events",
    params(EventQuery, PageQuery),
    responses((status = 200, description = "One page of the events of the outbox the filter \
        keeps, newest first. Delivered events are kept a day, failed ones 30 days.",
        body = Vec<EventView>)),
)]
pub(super) async fn list_events(call: Call<'_>) -> Answer {
    let mut params = Params::parse(call.query.as_deref())?;
    let filter = EventQuery::take(&mut params)?;
    let cut = Cut::new(
        Listing::Events,
        PageQuery::take(&mut params)?,
        DEFAULT_LIMIT,
    )?;
    params.finish()?;
    let after = cut.event_after();
    let events = manage::list_events(
        call.store,
        filter.status(),
        after.as_ref(),
        cut.page().limit,
    )
    .await?;
    let paged = cut.finish(events, |e| {
        event_key(&EventPosition {
            enqueued_at: e.enqueued_at,
            id: e.event.id.clone(),
        })
    });
    Reply::page(paged, |e| EventView::from(e))
}

/// `GET /events/{id}`: one event and how its delivery went.
#[utoipa::path(
    get,
    path = "/admin/v1/events/{id}",
    tag = "events",
    params(("id" = String, Path, description = "The event id (`evt_…`).", min_length = 1)),
    responses(
        (status = 200, description = "The event.", body = EventView),
        (status = 404, response = super::openapi::responses::NotFound),
    ),
)]
pub(super) async fn get_event(call: Call<'_>) -> Answer {
    let event = manage::get_event(call.store, call.param("id"))
        .await
        .map_err(ApiError::in_path)?;
    Reply::json(StatusCode::OK, &EventView::from(&event))
}

/// `POST /events/{id}/redeliver`: a failed event is due again for the
/// webhooks it did not reach, or for one of them.
#[utoipa::path(
    post,
    path = "/admin/v1/events/{id}/redeliver",
    tag = "events",
    params(("id" = String, Path, description = "The failed event's id (`evt_…`).",
        min_length = 1)),
    request_body(content = Option<RedeliverBody>, description = "The one webhook to \
        redeliver to; the body may be left out for every webhook the event did not reach."),
    responses(
        (status = 200, description = "The event, pending again: due now, its attempts \
            counted anew. No webhook it reached gets it again.", body = EventView),
        (status = 404, response = super::openapi::responses::NotFound),
        (status = 409, response = super::openapi::responses::Conflict),
    ),
)]
pub(super) async fn redeliver_event(call: Call<'_>) -> Answer {
    let id = call.param("id").to_owned();
    let b: RedeliverBody = read_optional_json(&call.headers, call.body).await?;
    let event = manage::redeliver_event(
        call.store,
        call.actor,
        &call.section.webhooks,
        &id,
        b.webhook_id.as_deref(),
    )
    .await
    .map_err(ApiError::in_path)?;
    Reply::json(StatusCode::OK, &EventView::from(&event))
}
