<?php
declare(strict_types=1);

namespace EmbedChat\Tests;

use EmbedChat\Engine;
use EmbedChat\Event;
use EmbedChat\EventKind;
use EmbedChat\Exception\BindException;
use EmbedChat\Exception\ConfigException;
use EmbedChat\Exception\InvalidValueException;
use EmbedChat\Exception\StoppedException;
use EmbedChat\Exception\UnknownConnectionException;
use EmbedChat\Exception\UnknownTokenException;
use EmbedChat\Native;
use PHPUnit\Framework\TestCase;

final class EngineTest extends TestCase
{
    private static function engine(array $extra = []): Engine
    {
        // Test clients never answer a close frame: do not wait the default 2 s for them.
        return Engine::start(['listen' => '127.0.0.1:0', 'close_timeout_ms' => 100, 'stop_timeout_ms' => 500] + $extra);
    }

    /** Events until one of $kind (others are kept in $seen). */
    private static function waitFor(Engine $e, EventKind $kind, array &$seen = []): Event
    {
        $deadline = microtime(true) + 5;
        while (microtime(true) < $deadline) {
            $ev = $e->poll(100);
            if ($ev !== null) {
                $seen[] = $ev;
                if ($ev->kind === $kind) {
                    return $ev;
                }
            }
        }
        self::fail("no {$kind->name} event within 5 s");
    }

    public function testStartsServesAndStopsOnce(): void
    {
        $e = self::engine();
        self::assertGreaterThan(0, $e->port());
        self::assertTrue($e->stats()['running']);
        $c = new WsClient($e->port(), 'name=ann');
        self::assertSame('welcome', $c->recv()['type']);
        $e->stop();
        self::assertTrue($e->isStopped());
        while ($c->recv() !== null) {
            // stop drops what was still queued; the close frame comes
        }
        self::assertSame(1001, $c->closeCode);
        $e->stop(); // a second stop does nothing
        $this->expectException(StoppedException::class);
        $e->broadcast('lobby', 'too late');
    }

    public function testBadConfigNamesTheKey(): void
    {
        try {
            self::engine(['worker_threads' => 0]);
            self::fail('started');
        } catch (ConfigException $x) {
            self::assertStringContainsString('worker_threads', $x->getMessage());
            self::assertSame(Native::RESULTS['CHAT_ERR_CONFIG'], $x->result);
        }
        $this->expectException(ConfigException::class);
        $this->expectExceptionMessage('colour');
        self::engine(['colour' => 'blue']);
    }

    public function testEmptyPhpArraysAreEmptyObjectsAndTypeErrorsSpeakJson(): void
    {
        // json_encode writes [] for an empty map: the engine takes it where an object belongs.
        $e = self::engine(['rooms' => ['ticker' => []], 'allowed_origins' => []]);
        self::assertGreaterThan(0, $e->port());
        $e->stop();
        try {
            self::engine(['max_rooms' => 'many']);
            self::fail('started');
        } catch (ConfigException $x) {
            self::assertStringContainsString('max_rooms', $x->getMessage());
            self::assertStringContainsString('expected a whole number', $x->getMessage());
            self::assertStringNotContainsString('usize', $x->getMessage());
        }
    }

    public function testBusyPortIsABindException(): void
    {
        $a = self::engine();
        $this->expectException(BindException::class);
        Engine::start(['listen' => '127.0.0.1:' . $a->port()]);
    }

    public function testHostCallsCheckTheirArguments(): void
    {
        $e = self::engine();
        try {
            $e->send(424242, 'hello');
            self::fail('sent');
        } catch (UnknownConnectionException $x) {
            self::assertStringContainsString('424242', $x->getMessage());
        }
        try {
            $e->broadcast("lob\0by", 'x');
            self::fail('sent');
        } catch (InvalidValueException) {
        }
        try {
            $e->broadcast('lobby', "\xff\xfe");
            self::fail('sent');
        } catch (InvalidValueException $x) {
            self::assertSame(Native::RESULTS['CHAT_ERR_UTF8'], $x->result);
        }
        $this->expectException(UnknownTokenException::class);
        $e->approve(99);
    }

    public function testEventsOfEachKindArriveTypedAndInOrder(): void
    {
        $e = self::engine();
        $seen = [];
        $ann = new WsClient($e->port(), 'name=ann&room=r');
        self::waitFor($e, EventKind::Join, $seen);
        $bob = new WsClient($e->port(), 'name=bob&room=r');
        self::waitFor($e, EventKind::Join, $seen);
        $ann->send('hello');
        self::waitFor($e, EventKind::Message, $seen);
        $bob->send('{"type":"whisper","to":"ann","text":"psst"}');
        $bob->send('{"type":"nick","name":"rob"}');
        $bob->send('{"type":"leave","room":"r"}');
        $nick = self::waitFor($e, EventKind::Nick, $seen);
        self::assertSame(['rob', 'bob'], [$nick->name, $nick->text]);
        self::waitFor($e, EventKind::Leave, $seen);
        $bob->close();
        self::waitFor($e, EventKind::Disconnect, $seen);
        $kinds = array_map(static fn (Event $x) => $x->kind, $seen);
        self::assertSame(
            [EventKind::Connect, EventKind::Join, EventKind::Connect, EventKind::Join, EventKind::Message,
             EventKind::Whisper, EventKind::Nick, EventKind::Leave, EventKind::Disconnect],
            $kinds,
        );
        $msg = $seen[4];
        self::assertSame(['r', 'ann', 'hello', 1], [$msg->room, $msg->name, $msg->text, $msg->msgId]);
        $seqs = array_map(static fn (Event $x) => $x->seq, $seen);
        self::assertSame(range(1, count($seen)), $seqs, 'numbered per engine');
        self::assertSame('message', json_decode($msg->json, true)['kind']);
    }

    public function testMessageTextWithNulBytesArrivesWhole(): void
    {
        // FFI reads a `const char *` field up to its first NUL; the text is read by text_len.
        $e = self::engine();
        $c = new WsClient($e->port(), 'name=ann');
        $c->send('{"type":"message","text":"ab\u0000cd"}');
        $msg = self::waitFor($e, EventKind::Message);
        self::assertSame("ab\0cd", $msg->text);
        self::assertSame(5, strlen($msg->text));
        self::assertSame("ab\0cd", json_decode($msg->json, true)['text'], 'the JSON says the same');
    }

    public function testAHandlerFilterSeesTheWordsAfterANulByte(): void
    {
        $e = self::engine(['relay' => 'host']);
        $e->on(EventKind::Message, static fn (Event $ev, Engine $en) => str_contains($ev->text, 'darn')
            ? $en->reject($ev->replyToken, 'no swearing')
            : $en->approve($ev->replyToken));
        $c = new WsClient($e->port(), 'name=ann');
        self::assertSame('welcome', $c->recv()['type']);
        $c->send('{"type":"message","text":"\u0000darn"}');
        $e->run(0.5);
        $err = $c->recvType('error');
        self::assertSame(['rejected', 'no swearing'], [$err['code'], $err['message']]);
    }

    public function testPublishedLaggingAndDroppedEventsReport(): void
    {
        // A room that drops for slow readers, a small backlog, and a client that never reads.
        // (The backlog must hold one message of max_message_bytes: the engine checks that.)
        $e = self::engine(['max_backlog_bytes' => 400_000, 'max_message_bytes' => 60_010,
            'published_events' => true,
            'rooms' => ['ticker' => ['slow_consumer' => 'drop_oldest']]]);
        $idle = new WsClient($e->port(), 'name=idle&room=ticker');
        self::waitFor($e, EventKind::Join);
        $big = str_repeat('x', 60_000); // fills the socket buffers, then the backlog
        for ($i = 0; $i < 100; $i++) {
            $e->broadcast('ticker', "$i $big");
        }
        $first = self::waitFor($e, EventKind::Published);
        self::assertSame([0, 'ticker', 'system', 1], [$first->connId, $first->room, $first->name, $first->msgId]);
        self::assertGreaterThan(0, self::waitFor($e, EventKind::Lagging)->code, 'messages the reader lost');
        $idle->close();

        // A host that does not take its events: they are dropped, counted, and reported.
        $busy = self::engine(['event_queue' => 16, 'published_events' => true]);
        for ($i = 0; $i < 40; $i++) {
            $busy->broadcast('news', "n$i");
        }
        self::assertGreaterThan(0, self::waitFor($busy, EventKind::Dropped)->code, 'how many were lost');
        self::assertGreaterThan(0, $busy->stats()['events_dropped']);
    }

    public function testHandlersRunInDispatchAndDecideHeldMessagesAndJoins(): void
    {
        $e = self::engine(['relay' => 'host', 'join_hook' => true]);
        $e->on(EventKind::JoinRequest, static fn (Event $ev, Engine $en) => $ev->room === 'vault'
            ? $en->reject($ev->replyToken, 'members only')
            : $en->approve($ev->replyToken));
        $e->on(EventKind::Message, static function (Event $ev, Engine $en): void {
            match (true) {
                str_contains($ev->text, 'darn') => $en->replace($ev->replyToken, str_replace('darn', '****', $ev->text)),
                str_contains($ev->text, 'spam') => $en->reject($ev->replyToken, 'no spam'),
                default => $en->approve($ev->replyToken),
            };
        });
        $c = new WsClient($e->port(), 'name=ann');
        $e->run(0.3); // admits the first join
        self::assertSame('welcome', $c->recv()['type']);
        $c->send('oh darn');
        $c->send('buy spam');
        $c->send('{"type":"join","room":"vault"}');
        $e->run(0.5);
        self::assertSame('oh ****', $c->recvType('message')['text']);
        $err = $c->recvType('error');
        self::assertSame(['rejected', 'no spam'], [$err['code'], $err['message']]);
        self::assertSame('join_rejected', $c->recvType('error')['code']);
    }

    public function testAHandlerExceptionComesOutOfRun(): void
    {
        $e = self::engine();
        $e->on(EventKind::Connect, static function (): void {
            throw new \DomainException('handler broke');
        });
        $c = new WsClient($e->port());
        $this->expectException(\DomainException::class);
        $e->run(5.0);
    }

    public function testSigtermEndsRunAndStopsTheEngine(): void
    {
        if (!function_exists('posix_kill')) {
            self::markTestSkipped('needs pcntl and posix');
        }
        $e = self::engine();
        $e->on(EventKind::Connect, static fn () => posix_kill(posix_getpid(), SIGTERM));
        $c = new WsClient($e->port());
        $t = microtime(true);
        $e->run(10.0);
        self::assertLessThan(5.0, microtime(true) - $t);
        self::assertTrue($e->isStopped());
        while ($c->recv() !== null) {
        }
        self::assertSame(1001, $c->closeCode);
    }

    public function testEventStreamWorksWithStreamSelect(): void
    {
        $e = self::engine();
        $s = $e->eventStream();
        $r = [$s];
        $w = $x = null;
        self::assertSame(0, stream_select($r, $w, $x, 0, 100_000), 'nothing yet');
        $c = new WsClient($e->port(), 'name=ann');
        $r = [$s];
        self::assertSame(1, stream_select($r, $w, $x, 5));
        self::assertSame(EventKind::Connect, $e->poll(0)->kind);
        self::assertSame(EventKind::Join, $e->poll(1000)->kind, 'pushed just after Connect');
        self::assertNull($e->poll(0));
        $r = [$s];
        self::assertSame(0, stream_select($r, $w, $x, 0, 50_000), 'drained');
    }

    public function testEnumsMatchTheHeader(): void
    {
        $h = (string) file_get_contents(Native::header());
        preg_match_all('/\b(CHAT_EVENT_[A-Z_]+) = (-?\d+)/', $h, $m, PREG_SET_ORDER);
        self::assertNotEmpty($m);
        foreach ($m as [, $name, $value]) {
            $case = str_replace('_', '', ucwords(strtolower(substr($name, strlen('CHAT_EVENT_'))), '_'));
            self::assertSame((int) $value, constant(EventKind::class . '::' . $case)->value, $name);
        }
        self::assertCount(count($m), EventKind::cases());
        preg_match_all('/\b(CHAT_(?:OK|ERR_[A-Z0-9_]+)) = (-?\d+)/', $h, $m, PREG_SET_ORDER);
        $fromHeader = [];
        foreach ($m as [, $name, $value]) {
            $fromHeader[$name] = (int) $value;
        }
        self::assertSame($fromHeader, Native::RESULTS);
    }

    public function testDestructStopsAndFrees(): void
    {
        $e = self::engine();
        $port = $e->port();
        $e->on(EventKind::Connect, static fn () => null);
        $e->dispatch(0);
        unset($e);
        $s = @stream_socket_client("tcp://127.0.0.1:$port", $errno, $err, 1);
        self::assertFalse($s, 'the port is closed once the last reference is gone');
    }
}
