<?php
/*
 * Host misuse from PHP through FFI: NULLs, invalid UTF-8, oversized text, unknown connection
 * ids, calls after stop, double stop, chat_free(NULL). Each must give its documented code and
 * never crash PHP. Prints "N checks failed" and exits 0 only when none did. Driven by tests/php.rs.
 */
declare(strict_types=1);

$root = dirname(__DIR__, 2);
$ffi = FFI::cdef(file_get_contents("$root/bindings/php/embedchat.h"), getenv('EMBEDCHAT_LIB'));
$failed = 0;
function check(bool $ok, string $what): void {
    global $failed, $ffi;
    if (!$ok) {
        $failed++;
        fwrite(STDERR, "FAILED: $what (last error: " . $ffi->chat_last_error() . ")\n");
    }
}

check($ffi->chat_start('{"listen":"127.0.0.1:0","nope":1}') === null, 'unknown key refused');
check(str_contains($ffi->chat_last_error(), '`nope`'), 'the key is named');
check($ffi->chat_broadcast(null, null, 'x') === $ffi->CHAT_ERR_NULL, 'NULL engine');
$ffi->chat_free(null);

$e = $ffi->chat_start('{"listen":"127.0.0.1:0","max_message_bytes":100}');
check($e !== null, 'start');
check($ffi->chat_broadcast($e, null, null) === $ffi->CHAT_ERR_NULL, 'NULL text');
check($ffi->chat_broadcast($e, "lob\xffby", 'x') === $ffi->CHAT_ERR_UTF8, 'invalid UTF-8 room');
check($ffi->chat_broadcast($e, null, "\xc3\x28") === $ffi->CHAT_ERR_UTF8, 'invalid UTF-8 text');
check(str_contains($ffi->chat_last_error(), '`text`'), 'the argument is named');
check($ffi->chat_broadcast($e, null, str_repeat('x', 101)) === $ffi->CHAT_ERR_INVALID, 'oversized text');
check($ffi->chat_send($e, 987654, 'x') === $ffi->CHAT_ERR_UNKNOWN_CONN, 'unknown connection');
check($ffi->chat_kick($e, 987654, null) === $ffi->CHAT_ERR_UNKNOWN_CONN, 'unknown connection kick');
check($ffi->chat_dispatch($e, 0) === $ffi->CHAT_ERR_INVALID, 'dispatch without a callback');
check($ffi->chat_broadcast($e, 'lobby', "hé \u{1F600}") === 0, 'valid UTF-8, empty room');
check($ffi->chat_stop($e) === $ffi->CHAT_OK, 'stop');
check($ffi->chat_stop($e) === $ffi->CHAT_ERR_STOPPED, 'double stop');
check($ffi->chat_broadcast($e, null, 'x') === $ffi->CHAT_ERR_STOPPED, 'broadcast after stop');
check($ffi->chat_set_callback($e, fn($u, $ev) => null, null) === $ffi->CHAT_ERR_STOPPED, 'callback after stop');
check($ffi->chat_event_fd($e) === $ffi->CHAT_ERR_STOPPED, 'event fd after stop');
$stats = $ffi->chat_stats_json($e);
check(json_decode(FFI::string($stats), true)['running'] === false, 'final stats readable');
$ffi->chat_string_free($stats);
$ffi->chat_free($e);

echo "$failed checks failed\n";
exit($failed === 0 ? 0 : 1);
