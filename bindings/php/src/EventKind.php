<?php
declare(strict_types=1);

namespace EmbedChat;

/** What happened. Values mirror `enum chat_event_kind` in embedchat.h (checked by a test). */
enum EventKind: int
{
    case Connect = 1;
    case Join = 2;
    case Message = 3;
    case Leave = 4;
    case Disconnect = 5;
    /** Events were dropped because the host did not keep up; `code` says how many. */
    case Dropped = 6;
    /** A slow client lost messages; `code` is its running total. */
    case Lagging = 7;
    case Whisper = 8;
    case Nick = 9;
    /** A join waits for approve()/reject() (config `join_hook`). */
    case JoinRequest = 10;
    /** With published_events: a message entered a room with `msgId` that no Message event reported (approved, replaced, or from the host). */
    case Published = 11;
    /** With refused_events: a WebSocket upgrade was refused (`code` = HTTP status, `text` = the reason sent). */
    case Refused = 12;
    /** In a cluster (redis_url): this node lost Redis (`code` 0, `text` why) or has it back (`code` 1). */
    case Cluster = 13;
}
