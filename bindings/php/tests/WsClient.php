<?php
declare(strict_types=1);

namespace EmbedChat\Tests;

/** A small real WebSocket client (RFC 6455 over a TCP stream) for the tests. */
final class WsClient
{
    /** @var resource */
    private $s;
    private string $buf = '';
    public ?int $closeCode = null;

    /**
     * @param array<string, mixed>|null $ssl `ssl` stream context options: speak wss:// with them
     * @param string $path the endpoint (`/app/{key}` for the Pusher protocol)
     */
    public function __construct(int $port, string $query = '', float $timeout = 5.0, ?array $ssl = null, string $path = '/ws')
    {
        $target = ($ssl === null ? 'tcp' : 'ssl') . "://127.0.0.1:$port";
        $context = stream_context_create($ssl === null ? [] : ['ssl' => $ssl]);
        $s = stream_socket_client($target, $errno, $err, $timeout, STREAM_CLIENT_CONNECT, $context);
        if ($s === false) {
            throw new \RuntimeException("connect: $err");
        }
        stream_set_timeout($s, (int) $timeout);
        $key = base64_encode(random_bytes(16));
        fwrite($s, "GET $path?$query HTTP/1.1\r\nHost: 127.0.0.1:$port\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            . "Sec-WebSocket-Key: $key\r\nSec-WebSocket-Version: 13\r\n\r\n");
        $head = '';
        while (!str_contains($head, "\r\n\r\n")) {
            $c = fread($s, 1);
            if ($c === '' || $c === false) {
                throw new \RuntimeException("handshake cut off: $head");
            }
            $head .= $c;
        }
        if (!str_starts_with($head, 'HTTP/1.1 101')) {
            throw new \RuntimeException('upgrade refused: ' . strtok($head, "\r\n"));
        }
        $this->s = $s;
    }

    public function send(string $text): void
    {
        $mask = random_bytes(4);
        $len = strlen($text);
        $hdr = chr(0x81) . ($len < 126 ? chr(0x80 | $len) : ($len < 65536 ? chr(0x80 | 126) . pack('n', $len) : chr(0x80 | 127) . pack('J', $len)));
        $masked = '';
        for ($i = 0; $i < $len; $i++) {
            $masked .= $text[$i] ^ $mask[$i % 4];
        }
        fwrite($this->s, $hdr . $mask . $masked);
    }

    private function need(int $n): string
    {
        while (strlen($this->buf) < $n) {
            $chunk = fread($this->s, 65536);
            if ($chunk === '' || $chunk === false) {
                if (stream_get_meta_data($this->s)['timed_out']) {
                    throw new \RuntimeException('timed out waiting for the server');
                }
                throw new \RuntimeException('connection closed');
            }
            $this->buf .= $chunk;
        }
        $out = substr($this->buf, 0, $n);
        $this->buf = substr($this->buf, $n);
        return $out;
    }

    /** The next text message as an array; null once the server closed (closeCode is set). */
    public function recv(): ?array
    {
        while (true) {
            [$b0, $b1] = array_values(unpack('C2', $this->need(2)));
            $len = $b1 & 0x7f;
            if ($len === 126) {
                $len = unpack('n', $this->need(2))[1];
            } elseif ($len === 127) {
                $len = unpack('J', $this->need(8))[1];
            }
            $payload = $len > 0 ? $this->need($len) : '';
            $op = $b0 & 0x0f;
            if ($op === 1) {
                return json_decode($payload, true, 512, JSON_THROW_ON_ERROR);
            }
            if ($op === 8) {
                $this->closeCode = strlen($payload) >= 2 ? unpack('n', $payload)[1] : 1005;
                return null;
            }
        }
    }

    /** The next message of one type, skipping others. */
    public function recvType(string $type): ?array
    {
        while (($m = $this->recv()) !== null) {
            if ($m['type'] === $type) {
                return $m;
            }
        }
        return null;
    }

    public function close(): void
    {
        if (is_resource($this->s)) {
            fclose($this->s);
        }
    }
}
