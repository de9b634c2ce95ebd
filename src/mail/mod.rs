//! Mail in and out (shell): decoding inbound messages, the pipeline that turns each into a case, a
//! command or a clear answer, signed Message-IDs, and composing and rendering outgoing emails.
//!
//! - [`mime`]: raw bytes to [`mime::Inbound`], within limits; auto-generated mail recognised.
//! - [`token`]: signed Message-IDs that tie a reply to the bot's own email about a case.
//! - [`render`]: handlebars templates (built in, overridable by the operator).
//! - [`docx`]: the board's record form as a Word document, HTML and text; a Word document read as text.
//! - [`compose`]: the emails that follow from a transition, with their recipients and headers.
//! - [`pipeline`]: one message in, one outcome out, committed with everything it causes.
//! - [`timebox`]: reading on threads of its own, each message within a time limit, never waited for past it.
//! - [`source`]: mailbox sources (Maildir; IMAP) feeding the daemon, acknowledged after commit.
//! - [`oauth`]: OAuth2 client-credentials tokens and SASL XOAUTH2, for Microsoft 365 and NHSmail.
//! - [`send`]: the sender task delivering the outbox (SMTP, or a Maildir folder) with retry.

pub mod compose;
pub mod docx;
pub mod imap;
pub mod limits;
pub mod mime;
pub mod oauth;
pub mod pipeline;
pub mod render;
pub mod send;
pub mod source;
pub mod timebox;
pub mod token;
