<?php
declare(strict_types=1);

namespace EmbedChat;

use EmbedChat\Exception\ControlException;

/**
 * Posts into the chat from ordinary PHP pages (PHP-FPM, no FFI) through the engine's HTTP API
 * (config `api_key`). Pure PHP streams: no curl needed.
 */
final class Publisher
{
    public function __construct(
        private readonly string $baseUrl,
        #[\SensitiveParameter] private readonly string $apiKey,
        private readonly float $timeout = 5.0,
    ) {
    }

    /** A message to $room (null: every room) shown as from $from (null: the engine's host_name). Returns how many connections got it. */
    public function publish(?string $room, string $text, ?string $from = null): int
    {
        $body = ['room' => $room, 'text' => $text];
        if ($from !== null) {
            $body['from'] = $from;
        }
        return (int) $this->request('POST', '/api/publish', $body)['delivered'];
    }

    /** A private message from the host to one connection. */
    public function send(int $connId, string $text): void
    {
        $this->request('POST', '/api/send', ['id' => $connId, 'text' => $text]);
    }

    /** Closes one connection (int) or every tab of a logged-in user (string: the token's user id). Returns how many. */
    public function kick(int|string $who, string $reason = ''): int
    {
        $body = is_int($who) ? ['id' => $who] : ['user' => $who];
        $body['reason'] = $reason;
        return (int) $this->request('POST', '/api/kick', $body)['kicked'];
    }

    /** @return list<array{room: string, users: int, connections: int, last_id: int}> */
    public function rooms(): array
    {
        return $this->request('GET', '/api/rooms')['rooms'];
    }

    public function presence(?string $room = null): array
    {
        return $this->request('GET', '/api/presence' . ($room === null ? '' : '?room=' . rawurlencode($room)));
    }

    public function stats(): array
    {
        return $this->request('GET', '/api/stats');
    }

    private function request(string $method, string $path, ?array $body = null): array
    {
        $headers = ["Authorization: Bearer {$this->apiKey}", 'Accept: application/json'];
        $content = '';
        if ($body !== null) {
            $content = json_encode($body, JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE);
            $headers[] = 'Content-Type: application/json';
        }
        $ctx = stream_context_create(['http' => [
            'method' => $method,
            'header' => implode("\r\n", $headers),
            'content' => $content,
            'timeout' => $this->timeout,
            'ignore_errors' => true, // read the JSON error body of a 4xx/5xx too
        ]]);
        $url = rtrim($this->baseUrl, '/') . $path;
        $raw = @file_get_contents($url, false, $ctx);
        if ($raw === false) {
            $why = error_get_last()['message'] ?? 'no answer';
            throw new ControlException("cannot reach the chat engine at $url: $why");
        }
        $status = 0;
        foreach ($http_response_header ?? [] as $h) {
            if (preg_match('#^HTTP/\S+\s+(\d{3})#', $h, $m)) {
                $status = (int) $m[1];
            }
        }
        $data = json_decode($raw, true);
        if ($status !== 200 || !is_array($data) || ($data['ok'] ?? false) !== true) {
            $msg = is_array($data) ? ($data['message'] ?? $raw) : trim($raw);
            throw new ControlException("chat engine answered $status to $method $path: $msg", Native::RESULTS['CHAT_ERR_CONTROL']);
        }
        return $data;
    }
}
