<?php
declare(strict_types=1);

namespace EmbedChat;

/**
 * One engine event, copied out of native memory (it stays valid after the callback returns).
 * `replyToken` is non-zero when the engine waits for approve()/reject()/replace().
 */
final class Event
{
    public function __construct(
        public readonly EventKind $kind,
        public readonly int $seq,
        public readonly int $connId,
        public readonly int $msgId,
        public readonly int $tsMs,
        public readonly int $code,
        public readonly ?string $room,
        public readonly ?string $name,
        public readonly ?string $text,
        public readonly int $replyToken,
        /** The event as the engine's JSON (the same fields, for logging or forwarding). */
        public readonly string $json,
        /** The site's user id (the login token's `sub`), or null for an anonymous connection. */
        public readonly ?string $user = null,
    ) {
    }

    /** @internal Copies a native `chat_event`. */
    public static function fromNative(\FFI\CData $ev): self
    {
        // PHP FFI hands `const char *` fields over as PHP strings already (read up to the NUL).
        $str = static fn ($p): ?string => $p === null || is_string($p) ? $p : \FFI::string($p);
        return new self(
            EventKind::from((int) $ev->kind),
            (int) $ev->seq,
            (int) $ev->conn_id,
            (int) $ev->msg_id,
            (int) $ev->ts_ms,
            (int) $ev->code,
            $str($ev->room),
            $str($ev->name),
            // Exactly text_len bytes: the text may contain NUL bytes. embedchat.h declares it
            // `const uint8_t *` so FFI keeps it a pointer instead of a string cut at the first NUL.
            $ev->text === null ? null : \FFI::string($ev->text, (int) $ev->text_len),
            (int) $ev->reply_token,
            (string) $str($ev->json),
            $str($ev->user),
        );
    }

    public function needsDecision(): bool
    {
        return $this->replyToken !== 0;
    }
}
