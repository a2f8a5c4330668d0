<?php
declare(strict_types=1);

namespace EmbedChat\Tests;

use EmbedChat\Engine;
use EmbedChat\Exception\InvalidValueException;
use EmbedChat\Pusher;
use PHPUnit\Framework\TestCase;

/** EmbedChat\Pusher: a site's auth endpoint answer, as Pusher's documentation signs it and as the engine checks it. */
final class PusherTest extends TestCase
{
    public function testSignaturesMatchPushersDocumentedExamples(): void
    {
        $p = new Pusher('278d425bdf160c739803', '7ad3773142a6692b25b8');
        self::assertSame(
            '{"auth":"278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"}',
            $p->authorizeChannel('1234.1234', 'private-foobar'),
        );
        $presence = json_decode($p->authorizeChannel('1234.1234', 'presence-foobar', ['user_id' => 10, 'user_info' => ['name' => 'Mr. Channels']]), true);
        self::assertSame('{"user_id":10,"user_info":{"name":"Mr. Channels"}}', $presence['channel_data']);
        self::assertSame('278d425bdf160c739803:31935e7d86dba64c2a90aed31fdc61869f9b22ba9d8863bba239c03ca481bc80', $presence['auth']);
    }

    public function testBadInputIsRefused(): void
    {
        $p = new Pusher('key', 'secret-0123456789abcdef');
        foreach ([['x', 'private-a', null], ['1.2', 'a b', null], ['1.2', 'presence-a', null], ['1.2', 'private-a', ['user_id' => 1]]] as [$s, $c, $u]) {
            try {
                $p->authorizeChannel($s, $c, $u);
                self::fail("accepted $s $c");
            } catch (InvalidValueException) {
                self::assertTrue(true);
            }
        }
        $this->expectException(InvalidValueException::class);
        new Pusher('key', 'short');
    }

    public function testTheEngineAcceptsTheSubscriptionsItSigns(): void
    {
        $key = 'php-app-key';
        $secret = 'php-app-secret-0123456789';
        $e = Engine::start(['listen' => '127.0.0.1:0', 'close_timeout_ms' => 100, 'stop_timeout_ms' => 500,
            'pusher' => ['app_id' => '1', 'key' => $key, 'secret' => $secret]]);
        $c = new WsClient($e->port(), 'protocol=7&client=php&version=1', 5.0, null, "/app/$key");
        $hello = $c->recv();
        self::assertSame('pusher:connection_established', $hello['event']);
        $socketId = json_decode($hello['data'], true)['socket_id'];
        $pusher = new Pusher($key, $secret);
        foreach (['private-orders' => null, 'presence-room' => ['user_id' => 'ada', 'user_info' => ['name' => 'Ada']]] as $channel => $user) {
            $auth = json_decode($pusher->authorizeChannel($socketId, $channel, $user), true);
            $c->send(json_encode(['event' => 'pusher:subscribe', 'data' => ['channel' => $channel] + $auth]));
            $ok = $c->recv();
            self::assertSame(['pusher_internal:subscription_succeeded', $channel], [$ok['event'], $ok['channel']], json_encode($ok));
        }
        self::assertSame(['ada'], json_decode($ok['data'], true)['presence']['ids']);
        $c->close();
        $e->stop();
    }
}
