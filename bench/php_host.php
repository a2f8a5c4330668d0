<?php
/*
 * A PHP host for the benchmark (and tests/php.rs): `auto` only drains events; `approve` runs
 * relay "host" and approves every message from the chat_dispatch callback, so a message reaches
 * the room only after PHP said yes. Prints "listening on http://127.0.0.1:PORT"; exits after
 * handling COUNT messages (and a short grace period).
 *   EMBEDCHAT_LIB=target/release/libembedchat.so php bench/php_host.php approve 500
 */
declare(strict_types=1);

$root = dirname(__DIR__);
$mode = $argv[1] ?? 'approve';
$count = (int)($argv[2] ?? 500);
$ffi = FFI::cdef(file_get_contents("$root/bindings/php/embedchat.h"),
    getenv('EMBEDCHAT_LIB') ?: "$root/target/release/libembedchat.so");
$engine = $ffi->chat_start(json_encode([
    'listen' => '127.0.0.1:0',
    'relay' => $mode === 'approve' ? 'host' : 'auto',
    'max_messages_per_second' => 0,
]));
if ($engine === null) {
    fwrite(STDERR, $ffi->chat_last_error() . "\n");
    exit(1);
}
echo "listening on http://127.0.0.1:", $ffi->chat_port($engine), "\n";

$handled = 0;
$failures = 0;
$ffi->chat_set_callback($engine, function ($u, $ev) use ($ffi, $engine, $mode, &$handled, &$failures): void {
    if ($ev->kind !== $ffi->CHAT_EVENT_MESSAGE) {
        return;
    }
    $handled++;
    if ($mode === 'approve' && $ffi->chat_approve($engine, $ev->reply_token) !== $ffi->CHAT_OK) {
        $failures++;
    }
}, null);

$deadline = microtime(true) + 120;
while ($handled < $count && microtime(true) < $deadline) {
    $ffi->chat_dispatch($engine, 100);
}
$grace = microtime(true) + 0.3;
while (microtime(true) < $grace) {
    $ffi->chat_dispatch($engine, 50);
}
$ffi->chat_stop($engine);
$ffi->chat_free($engine);
echo "handled $handled, failed approvals $failures\n";
exit($handled === $count && $failures === 0 ? 0 : 1);
