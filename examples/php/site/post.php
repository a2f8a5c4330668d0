<?php
/*
 * An announcement from an ordinary PHP-FPM page, two ways:
 *   via=http    the daemon's HTTP API (EmbedChat\Publisher; pure PHP, works everywhere)
 *   via=socket  the daemon's control socket (EmbedChat\Engine::connect; FFI, which PHP-FPM
 *               allows only when preloaded: see bindings/php/README.md)
 * POST room, text, via (default both). Answers JSON: how many connections each way reached.
 */
declare(strict_types=1);

use EmbedChat\Engine;
use EmbedChat\Exception\EmbedChatException;
use EmbedChat\Publisher;

$cfg = require __DIR__ . '/config.php';
header('Content-Type: application/json');

$room = (string) ($_POST['room'] ?? 'lobby');
$text = trim((string) ($_POST['text'] ?? ''));
$via = (string) ($_POST['via'] ?? 'both');
if ($_SERVER['REQUEST_METHOD'] !== 'POST' || $text === '') {
    http_response_code(400);
    echo json_encode(['error' => 'POST room and a non-empty text']), "\n";
    exit;
}

$result = [];
if ($via === 'http' || $via === 'both') {
    try {
        $publisher = new Publisher($cfg['chat_url'], $cfg['api_key']);
        $result['http'] = $publisher->publish($room, $text, 'Announcements');
    } catch (EmbedChatException $e) {
        $result['http_error'] = $e->getMessage();
    }
}
if ($via === 'socket' || $via === 'both') {
    try {
        $result['socket'] = Engine::connect($cfg['socket'], daemonUser: $cfg['daemon_user'])->broadcast($room, "$text (via the control socket)");
    } catch (EmbedChatException $e) {
        $result['socket_error'] = $e->getMessage();
    }
}
if (isset($result['http_error']) || isset($result['socket_error'])) {
    http_response_code(502);
}
echo json_encode($result), "\n";
