//! The functional core: pure, synchronous, and free of I/O.
//!
//! Everything here takes `now` as an argument and never reads the clock, the network, the filesystem or
//! the database; nothing here imports sqlx, tokio, lettre or async-imap. Given a case and an event it
//! returns the new state plus the messages and timers that follow, so almost all behaviour is tested here.
//!
//! - [`calendar`]: bank holidays and working-day arithmetic.
//! - [`policy`]: a board's procedure as data, and its validation.
//! - [`rules`]: one board's policy, calendar, timezone and working hours together.
//! - [`case`]: the case record.
//! - [`lifecycle`]: the transitions (open, escalate, resolve, …) and what a fired timer means.
//! - [`schedule`]: deadlines and timers as a function of case state.
//! - [`timeline`]: the deadlines a case opened at a given moment would get.
//! - [`paperwork`]: the board's own record form, filled in from the case.
//! - [`directory`]: whom to involve at the next stage, and the board's directory of people by role.
//! - [`nhs`]: NHS number validation.
//! - [`html`]: an email's HTML as text (tables as tab-separated lines), in one linear pass.
//! - [`intake`]: reading an escalation record out of an email's text.
//! - [`actions`]: the agreed actions of a resolution, with owners and dates.
//! - [`reply`]: reading a command from the new text at the top of a reply.
//! - [`digest`]: the board manager's digest, and when scheduled digests go.
//! - [`report`]: the board's monitoring report for a period.

pub mod actions;
pub mod calendar;
pub mod case;
pub mod digest;
pub mod directory;
pub mod essentials;
pub mod html;
pub mod intake;
pub mod lifecycle;
pub mod nhs;
pub mod paperwork;
pub mod policy;
pub mod reply;
pub mod report;
pub mod retention;
pub mod rules;
pub mod schedule;
pub mod timeline;
