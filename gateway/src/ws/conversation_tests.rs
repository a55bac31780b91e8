//! The turn logic, input by input: queueing, barge-in, trims, pause and failed replies.

use super::*;

fn setup(history: Vec<session::ConversationTurn>) -> Conversation {
    Conversation::new(Setup {
        session_id: "s".into(),
        conversation_id: "c".into(),
        child: llm::ChildProfile { name: "Mia".into(), grade_level: 1 },
        history,
        pauses_ms: vec![300],
        paused: false,
        tts: TtsHint { voice: "v".into(), speed: 1.0, language: "en".into() },
    })
}

fn heard(text: &str) -> stt::FinalTranscript {
    stt::FinalTranscript {
        text: text.into(),
        confidence: 0.91234,
        language: "en".into(),
        duration_ms: 1200,
        inference_ms: 300,
    }
}

/// One line per effect, for readable assertions.
fn lines(effects: &[Effect]) -> Vec<String> {
    effects
        .iter()
        .map(|effect| match effect {
            Effect::Send(out) => {
                let detail = match &out.event {
                    ServerEvent::State(change) => change.state.to_string(),
                    ServerEvent::ReplyChunk(chunk) => format!("{} {}", chunk.index, chunk.text),
                    ServerEvent::Reply(reply) => reply.text.clone(),
                    ServerEvent::ReplyCancelled(c) => c.sent_text.clone(),
                    ServerEvent::Error(error) => error.code.to_string(),
                    ServerEvent::SttResult(result) => result.transcript.clone(),
                    ServerEvent::SttRejected(rejected) => rejected.reason.to_string(),
                    ServerEvent::SessionResumed(resumed) => resumed.reason.to_string(),
                    _ => String::new(),
                };
                format!("send {} {detail}", out.event.action()).trim().to_owned()
            }
            Effect::StartReply { request, .. } => format!("start {}", request.user_text),
            Effect::CancelReply => "cancel".into(),
            Effect::Persist(Job::Save { turn, .. }) => {
                format!("save {:?} interrupted={}", turn.assistant_text, turn.interrupted)
            }
            Effect::Persist(Job::Trim { progress, .. }) => {
                format!("trim {}", progress.chars_spoken)
            }
            Effect::Persist(Job::SetPaused { paused, .. }) => format!("set paused {paused}"),
            Effect::TraceUtterance { utterance_id, .. } => format!("trace {utterance_id}"),
            Effect::Stage { stage, .. } => format!("stage {stage}"),
            Effect::OpenSpeech => "open speech".into(),
            Effect::CloseSpeech => "close speech".into(),
        })
        .collect()
}

/// The request id of the reply started by these effects.
fn started(effects: &[Effect]) -> String {
    effects
        .iter()
        .find_map(|e| match e {
            Effect::StartReply { request, .. } => Some(request.request_id.clone()),
            _ => None,
        })
        .expect("a reply was started")
}

#[test]
fn a_turn_goes_through_its_states_and_is_saved() {
    let mut talk = setup(Vec::new());
    assert_eq!(lines(&talk.speech_started(1)), ["trace 1", "send conversation.state LISTENING"]);
    assert_eq!(
        lines(&talk.speech_ended(Some(vec![300, 450]))),
        ["send conversation.state TRANSCRIBING"]
    );
    let effects = talk.transcript(1, heard("Why is the sky blue?"), Some("t".into()));
    assert_eq!(
        lines(&effects),
        [
            "send stt_result Why is the sky blue?",
            "stage transcript",
            "send conversation.state THINKING",
            "start Why is the sky blue?",
        ]
    );
    let Effect::Send(result) = &effects[0] else { unreachable!() };
    let ServerEvent::SttResult(stt) = &result.event else { unreachable!() };
    assert_eq!((stt.confidence, result.thread_id.as_deref()), (0.912, Some("t")));
    let id = started(&effects);
    assert_eq!(lines(&talk.first_token(&id)), ["stage first_token"]);
    assert_eq!(
        lines(&talk.sentence(&id, "Sunlight scatters.".into())),
        [
            "send conversation.state RESPONDING",
            "send ai_response.chunk 0 Sunlight scatters.",
            "stage first_sentence"
        ]
    );
    assert!(matches!(talk.turn(), TurnState::Responding(_)));
    assert_eq!(
        lines(&talk.sentence(&id, "Blue most.".into())),
        ["send ai_response.chunk 1 Blue most."]
    );
    assert_eq!(
        lines(&talk.reply_done(&id, Ok("Sunlight scatters. Blue most.".into()))),
        [
            "send ai_response Sunlight scatters. Blue most.",
            "stage reply_complete",
            "save \"Sunlight scatters. Blue most.\" interrupted=false",
        ]
    );
    // IDLE once the exchange is stored, so a client that sees it knows the exchange is kept.
    assert!(matches!(talk.turn(), TurnState::Saving { .. }));
    assert!(talk.saved("another turn", true).is_empty());
    assert_eq!(lines(&talk.saved(&id, true)), ["send conversation.state IDLE"]);
    assert!(matches!(talk.turn(), TurnState::Idle));
    assert_eq!((talk.exchanges(), talk.pauses_ms()), (1, &[300, 450][..]));
}

#[test]
fn a_transcript_during_a_reply_waits_its_turn() {
    let mut talk = setup(Vec::new());
    let first = started(&talk.transcript(1, heard("Tell me a story."), None));
    assert_eq!(
        lines(&talk.transcript(2, heard("About a dragon."), None)),
        ["send stt_result About a dragon.", "stage transcript"],
        "no second reply while one runs"
    );
    talk.reply_done(&first, Ok("Once upon a time.".into()));
    let effects = talk.saved(&first, true);
    assert_eq!(
        lines(&effects),
        [
            "send conversation.state IDLE",
            "send conversation.state THINKING",
            "start About a dragon."
        ]
    );
    let Effect::StartReply { request, .. } = &effects[2] else { unreachable!() };
    assert_eq!(request.history.len(), 2, "the first exchange is the next reply's history");
}

#[test]
fn barge_in_cancels_the_reply_and_keeps_what_was_sent() {
    let mut talk = setup(Vec::new());
    let id = started(&talk.transcript(1, heard("Sing a song."), None));
    talk.sentence(&id, "La la la.".into());
    assert_eq!(
        lines(&talk.speech_started(2)),
        [
            "cancel",
            "send ai_response.cancelled La la la.",
            "save \"La la la.\" interrupted=true",
            "trace 2",
            "send conversation.state LISTENING",
        ]
    );
    // What the cancelled reply still says is dropped.
    assert!(talk.sentence(&id, "Tra la.".into()).is_empty());
    assert!(talk.reply_done(&id, Ok("La la la. Tra la.".into())).is_empty());
    assert_eq!(talk.exchanges(), 1);
}

#[test]
fn playback_progress_trims_the_reply_in_progress_or_the_stored_one() {
    let mut talk = setup(Vec::new());
    let id = started(&talk.transcript(1, heard("Hello."), None));
    talk.sentence(&id, "Hello there, friend.".into());
    let progress = PlaybackProgress { request_id: id.clone(), chars_spoken: 5 };
    assert_eq!(lines(&talk.playback(progress, Some("p".into()))), ["send playback.progress"]);
    let done = talk.reply_done(&id, Ok("Hello there, friend.".into()));
    assert_eq!(lines(&done)[2], "save \"Hello\" interrupted=true", "saved as heard");

    let stored = session::ConversationTurn {
        request_id: "old".into(),
        user_text: "Hi".into(),
        assistant_text: "Good morning to you.".into(),
        created_at_ms: 0,
        interrupted: false,
    };
    let mut talk = setup(vec![stored]);
    let progress = PlaybackProgress { request_id: "old".into(), chars_spoken: 4 };
    assert_eq!(lines(&talk.playback(progress, Some("p".into()))), ["trim 4"]);
    let next = talk.transcript(1, heard("And?"), None);
    let Effect::StartReply { request, .. } = &next[3] else { unreachable!() };
    assert_eq!(request.history[1].text, "Good", "the next reply knows what was heard");
    let unknown = PlaybackProgress { request_id: "nope".into(), chars_spoken: 1 };
    assert_eq!(lines(&talk.playback(unknown, None)), ["send error UNKNOWN_TURN"]);
}

#[test]
fn pausing_stops_all_turn_work_until_resumed() {
    let mut talk = setup(Vec::new());
    let id = started(&talk.transcript(1, heard("One."), None));
    talk.transcript(2, heard("Two."), None);
    assert_eq!(
        lines(&talk.set_paused(true)),
        [
            "close speech",
            "cancel",
            "send ai_response.cancelled",
            "save \"\" interrupted=true",
            "send session.paused",
            "send conversation.state IDLE",
        ]
    );
    assert!(talk.set_paused(true).is_empty(), "a signal echoing our own pause changes nothing");
    assert!(talk.reply_done(&id, Ok("late".into())).is_empty());
    assert_eq!(lines(&talk.set_paused(false)), ["open speech", "send session.resumed unpaused"]);
    // The waiting transcript was dropped: a new one is answered at once.
    assert_eq!(lines(&talk.transcript(3, heard("Three."), None))[3], "start Three.");
}

#[test]
fn a_failed_reply_reports_its_error_and_keeps_the_sentences_sent() {
    let mut talk = setup(Vec::new());
    let id = started(&talk.transcript(1, heard("Count."), None));
    talk.sentence(&id, "One, two.".into());
    assert_eq!(
        lines(&talk.reply_done(&id, Err(tonic::Code::DeadlineExceeded))),
        ["send error LLM_TIMEOUT", "save \"One, two.\" interrupted=true"]
    );
    // The store failed: that is reported on the turn, and the turn is over all the same.
    assert_eq!(
        lines(&talk.saved(&id, false)),
        ["send error STATE_UNAVAILABLE", "send conversation.state IDLE"]
    );
    let id = started(&talk.transcript(2, heard("Again."), None));
    assert_eq!(
        lines(&talk.reply_done(&id, Err(tonic::Code::Unavailable))),
        ["send error LLM_UNAVAILABLE", "send conversation.state IDLE"],
        "nothing was said, nothing is saved"
    );
}

#[test]
fn a_rejected_utterance_ends_the_turn_unless_blob_is_answering() {
    let mut talk = setup(Vec::new());
    talk.speech_started(1);
    assert_eq!(
        lines(&talk.rejected(RejectReason::TooShort, 300, 0.0)),
        ["send stt_rejected too_short", "send conversation.state IDLE"]
    );
    started(&talk.transcript(2, heard("Hi."), None));
    assert_eq!(
        lines(&talk.rejected(RejectReason::Hallucination, 900, 0.2)),
        ["send stt_rejected hallucination"]
    );
}
