<?php
/*
 * What posting from a PHP page costs: N publishes through the HTTP API (EmbedChat\Publisher,
 * a new HTTP connection each, as an FPM request would make) and through the control socket
 * (EmbedChat\Engine::connect, one handle reused, as a preloaded FPM worker would), against a
 * running engine with one listening client. Prints per-call median and p99 in ms.
 *   EMBEDCHAT_LIB=target/release/libembedchat.so php bench/php_publish.php 2000
 */
declare(strict_types=1);

require dirname(__DIR__) . '/bindings/php/autoload.php';

use EmbedChat\Engine;
use EmbedChat\Publisher;

$n = (int) ($argv[1] ?? 2000);
$sock = sys_get_temp_dir() . '/embedchat-bench-' . getmypid() . '.sock';
$key = 'bench-key-0123456789abcdef';
$engine = Engine::start(['listen' => '127.0.0.1:0', 'api_key' => $key, 'control_socket' => $sock,
    'event_queue' => 1 << 20, 'history_size' => 0]);
$port = $engine->port();
$client = stream_socket_client("tcp://127.0.0.1:$port");
fwrite($client, "GET /ws?name=listener HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    . "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
stream_set_blocking($client, false); // never read: a slow listener must not matter (1 MiB backlog)

function measure(int $n, callable $call): array
{
    $t = [];
    for ($i = 0; $i < $n; $i++) {
        $s = hrtime(true);
        $call($i);
        $t[] = (hrtime(true) - $s) / 1e6;
    }
    sort($t);
    return [$t[intdiv($n, 2)], $t[(int) floor($n * 0.99)]];
}

$pub = new Publisher("http://127.0.0.1:$port", $key);
$remote = Engine::connect($sock);
foreach (['http api (Publisher)' => fn ($i) => $pub->publish('lobby', "m$i"),
          'control socket (Engine::connect)' => fn ($i) => $remote->broadcast('lobby', "m$i")] as $what => $call) {
    measure(100, $call); // warm up
    [$p50, $p99] = measure($n, $call);
    printf("%-34s %d calls: p50 %.3f ms, p99 %.3f ms\n", $what, $n, $p50, $p99);
}
$engine->stop();
