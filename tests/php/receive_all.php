<?php
/*
 * PHP keeps running PHP code while client messages pour in, and takes every one through
 * chat_dispatch on its own thread. Driven by tests/php.rs: prints "port N", then expects
 * $argv[1] messages "c<client>-<i>" from clients it does not know, in order per client, and
 * prints "received N busy-loops M" before exiting 0. Any gap, reorder or crash fails.
 */
declare(strict_types=1);

$root = dirname(__DIR__, 2);
$ffi = FFI::cdef(file_get_contents("$root/bindings/php/embedchat.h"), getenv('EMBEDCHAT_LIB'));
$expected = (int)($argv[1] ?? 10000);
$engine = $ffi->chat_start(json_encode([
    'listen' => '127.0.0.1:0',
    'relay' => 'host',          // the host receives messages; clients are not flooded back
    'event_queue' => 1 << 20,   // hold every event even if PHP falls behind
    'max_messages_per_second' => 0, // the clients send flat out on purpose
]));
if ($engine === null) {
    fwrite(STDERR, $ffi->chat_last_error() . "\n");
    exit(1);
}
echo "port ", $ffi->chat_port($engine), "\n";

$received = 0;
$next = [];          // client => next expected index
$lastSeq = 0;
$errors = [];
$phpThread = getmypid();
$onEvent = function ($u, $ev) use ($ffi, &$received, &$next, &$lastSeq, &$errors, $phpThread): void {
    if ($ev->seq <= $lastSeq) {
        $errors[] = "seq went from $lastSeq to {$ev->seq}";
    }
    $lastSeq = $ev->seq;
    if ($ev->kind === $ffi->CHAT_EVENT_DROPPED) {
        $errors[] = "dropped {$ev->code} events";
    }
    if ($ev->kind !== $ffi->CHAT_EVENT_MESSAGE) {
        return;
    }
    $text = FFI::string($ev->text, $ev->text_len);
    if (!preg_match('/^c(\d+)-(\d+)$/', $text, $m)) {
        $errors[] = "unexpected text $text";
        return;
    }
    $want = $next[$m[1]] ?? 0;
    if ((int)$m[2] !== $want) {
        $errors[] = "client {$m[1]}: got {$m[2]}, expected $want";
    }
    $next[$m[1]] = (int)$m[2] + 1;
    $received++;
};
$ffi->chat_set_callback($engine, $onEvent, null);

// Busy PHP work between dispatches: the engine's threads must never touch this interpreter.
$deadline = microtime(true) + 120;
$busy = 0;
$acc = '';
while ($received < $expected && microtime(true) < $deadline) {
    for ($i = 0; $i < 200; $i++) {
        $acc = md5($acc . $i);
        $tmp = array_map(fn($x) => $x * 2, range(1, 20));
    }
    $busy++;
    if ($ffi->chat_dispatch($engine, 0) < 0) {
        $errors[] = 'chat_dispatch: ' . $ffi->chat_last_error();
        break;
    }
}
$ffi->chat_stop($engine);
$ffi->chat_free($engine);
foreach (array_slice($errors, 0, 10) as $e) {
    fwrite(STDERR, "$e\n");
}
echo "received $received busy-loops $busy\n";
exit($received === $expected && !$errors ? 0 : 1);
