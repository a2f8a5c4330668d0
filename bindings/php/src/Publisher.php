<?php
declare(strict_types=1);

namespace EmbedChat;

use EmbedChat\Exception\ControlException;
use EmbedChat\Exception\InvalidValueException;

/**
 * Posts into the chat from ordinary PHP pages (PHP-FPM, no FFI) through the engine's HTTP API
 * (config `api_key`). Pure PHP streams: no curl needed.
 *
 * An `https://` base URL (an engine with `tls` in its config, or a proxy in front) speaks TLS
 * 1.2 or 1.3 and checks the certificate: `$verify` true checks it against the system's CAs,
 * a string is the path of a CA file to check it against instead (a private CA, or the engine's
 * own self-signed certificate), and false turns the check off, which anyone on the network
 * path can then exploit: only for tests, or for 127.0.0.1 where nobody else is on the path.
 */
final class Publisher
{
    public function __construct(
        private readonly string $baseUrl,
        #[\SensitiveParameter] private readonly string $apiKey,
        private readonly float $timeout = 5.0,
        private readonly bool|string $verify = true,
    ) {
        if (is_string($verify) && !is_readable($verify)) {
            throw new InvalidValueException("verify: cannot read the CA file $verify", Native::RESULTS['CHAT_ERR_INVALID']);
        }
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
        $content = $body === null
            ? ''
            : json_encode($body, JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE);
        [$status, $raw] = $this->http($method, $path, $content);
        $data = json_decode($raw, true);
        if ($status !== 200 || !is_array($data) || ($data['ok'] ?? false) !== true) {
            $msg = is_array($data) ? ($data['message'] ?? $raw) : trim($raw);
            throw new ControlException("chat engine answered $status to $method $path: $msg", Native::RESULTS['CHAT_ERR_CONTROL']);
        }
        return $data;
    }

    /**
     * One HTTP/1.1 request on its own connection. Written on sockets rather than the http://
     * stream wrapper or curl, so it works where `allow_url_fopen` is off and ext-curl missing
     * (common on shared PHP hosting). https:// needs ext-openssl (PHP's `ssl://` streams).
     *
     * @return array{int, string} status and body
     */
    private function http(string $method, string $path, string $content): array
    {
        $url = parse_url($this->baseUrl);
        $scheme = $url['scheme'] ?? 'http';
        $host = $url['host'] ?? '127.0.0.1';
        $port = $url['port'] ?? ($scheme === 'https' ? 443 : 80);
        $prefix = rtrim($url['path'] ?? '', '/');
        $tls = $scheme === 'https';
        // `ssl://` negotiates the best version both sides have; `crypto_method` keeps it to TLS
        // 1.2 and 1.3 (`tls://` would mean 1.0 to 1.2 on some PHP versions).
        $target = ($tls ? 'ssl' : 'tcp') . "://$host:$port";
        $context = stream_context_create($tls ? ['ssl' => $this->sslOptions($host)] : []);
        // A failed TLS handshake leaves $err empty: the reason ("certificate verify failed") is
        // in the warnings PHP raises on the way, which are kept for the exception instead.
        $warnings = [];
        set_error_handler(static function (int $no, string $msg) use (&$warnings): bool {
            $warnings[] = preg_replace('/^stream_socket_client\(\): /', '', $msg);
            return true;
        });
        try {
            $s = stream_socket_client($target, $errno, $err, $this->timeout, STREAM_CLIENT_CONNECT, $context);
        } finally {
            restore_error_handler();
        }
        if ($s === false) {
            $why = implode('; ', array_filter([$err, ...$warnings]));
            throw new ControlException("cannot reach the chat engine at {$this->baseUrl}: $why ($errno)");
        }
        try {
            stream_set_timeout($s, (int) ceil($this->timeout));
            $hostHeader = str_contains($host, ':') ? "[$host]:$port" : "$host:$port";
            $req = "$method $prefix$path HTTP/1.1\r\nHost: $hostHeader\r\nConnection: close\r\n"
                . "Authorization: Bearer {$this->apiKey}\r\nAccept: application/json\r\n";
            if ($content !== '') {
                $req .= "Content-Type: application/json\r\nContent-Length: " . strlen($content) . "\r\n";
            }
            fwrite($s, "$req\r\n$content");
            $response = stream_get_contents($s);
            if ($response === false || $response === '' || stream_get_meta_data($s)['timed_out']) {
                throw new ControlException("no answer from the chat engine at {$this->baseUrl} within {$this->timeout} s");
            }
        } finally {
            fclose($s);
        }
        [$head, $bodyText] = array_pad(explode("\r\n\r\n", $response, 2), 2, '');
        if (!preg_match('#^HTTP/1\.[01] (\d{3})#', $head, $m)) {
            throw new ControlException("not an HTTP answer from {$this->baseUrl}");
        }
        return [(int) $m[1], $bodyText];
    }

    /** The `ssl` stream context options for $host (see the class comment for `verify`). */
    private function sslOptions(string $host): array
    {
        $o = [
            'peer_name' => $host,
            'SNI_enabled' => true,
            'crypto_method' => STREAM_CRYPTO_METHOD_TLSv1_2_CLIENT | STREAM_CRYPTO_METHOD_TLSv1_3_CLIENT,
        ];
        if ($this->verify === false) {
            return $o + ['verify_peer' => false, 'verify_peer_name' => false, 'allow_self_signed' => true];
        }
        $o += ['verify_peer' => true, 'verify_peer_name' => true];
        if (is_string($this->verify)) {
            $o['cafile'] = $this->verify;
        }
        return $o;
    }
}
