<?php
/*
 * embedchat from PHP (CLI + FFI): the "echo bot in the lobby" scenario.
 *
 *   cargo build --release
 *   php examples/php/daemon.php 127.0.0.1:8080        # then open http://127.0.0.1:8080/
 *
 * The library is found through EMBEDCHAT_LIB or the repository's target/release. The callback is
 * a PHP closure, and it only ever runs inside chat_dispatch() on this PHP thread: the engine never
 * calls PHP from its own threads (that crashes PHP). Ctrl-C stops the engine cleanly.
 */
declare(strict_types=1);

$root = dirname(__DIR__, 2);
$lib = getenv('EMBEDCHAT_LIB') ?: "$root/target/release/libembedchat.so";
if (!is_file($lib)) {
    fwrite(STDERR, "libembedchat not found at $lib: run `cargo build --release` or set EMBEDCHAT_LIB\n");
    exit(1);
}
$ffi = FFI::cdef(file_get_contents("$root/bindings/php/embedchat.h"), $lib);
if ($ffi->chat_abi_version() !== 1) {
    fwrite(STDERR, "this script speaks ABI 1, the library ABI " . $ffi->chat_abi_version() . "\n");
    exit(1);
}

$listen = $argv[1] ?? '127.0.0.1:8080';
$engine = $ffi->chat_start(json_encode(['listen' => $listen]));
if ($engine === null) {
    fwrite(STDERR, "chat_start: " . $ffi->chat_last_error() . "\n");
    exit(1);
}
echo "listening on http://127.0.0.1:" . $ffi->chat_port($engine) . "\n";

$onEvent = function ($userdata, $ev) use ($ffi, $engine): void {
    echo FFI::string($ev->json), "\n";
    if ($ev->kind === $ffi->CHAT_EVENT_MESSAGE && FFI::string($ev->text, $ev->text_len) === '/time') {
        $rc = $ffi->chat_send($engine, $ev->conn_id, 'server time: ' . date('H:i:s') . ' (PHP ' . PHP_VERSION . ')');
        if ($rc !== $ffi->CHAT_OK) {
            fwrite(STDERR, "chat_send: " . $ffi->chat_last_error() . "\n");
        }
    }
};
$ffi->chat_set_callback($engine, $onEvent, null);

$running = true;
if (function_exists('pcntl_async_signals')) {
    pcntl_async_signals(true);
    $stop = function () use (&$running): void { $running = false; };
    pcntl_signal(SIGINT, $stop);
    pcntl_signal(SIGTERM, $stop);
}
while ($running) {
    $n = $ffi->chat_dispatch($engine, 200); // events run $onEvent right here, on this thread
    if ($n < 0) {
        fwrite(STDERR, "chat_dispatch: " . $ffi->chat_last_error() . "\n");
        break;
    }
}
$rc = $ffi->chat_stop($engine);
$stats = $ffi->chat_stats_json($engine);
echo "stopped (" . $ffi->chat_result_str($rc) . "): " . FFI::string($stats) . "\n";
$ffi->chat_string_free($stats);
$ffi->chat_free($engine);
