<?php
declare(strict_types=1);

namespace EmbedChat;

use EmbedChat\Exception\InvalidValueException;

/**
 * The site's side of the Pusher protocol (config `pusher`), for sites without Pusher's PHP
 * library: the answer of a broadcasting auth endpoint (what Laravel's `/broadcasting/auth`
 * returns), signed with the app secret. Pure PHP, no FFI: a PHP-FPM page can use it.
 *
 *     $pusher = new Pusher($key, $secret);
 *     // POST socket_id, channel_name from pusher-js / Laravel Echo, after the site's own check:
 *     echo $pusher->authorizeChannel($_POST['socket_id'], $_POST['channel_name'],
 *         ['user_id' => $user->id, 'user_info' => ['name' => $user->name]]);  // presence only
 */
final class Pusher
{
    /**
     * @param string $key    the engine's `pusher.key`
     * @param string $secret the engine's `pusher.secret` (at least 16 bytes)
     */
    public function __construct(private string $key, private string $secret)
    {
        if ($key === '' || strlen($secret) < 16) {
            throw new InvalidValueException('a Pusher app needs its key and a secret of at least 16 bytes, as in the engine config');
        }
    }

    /**
     * The JSON body for a subscription the site allows: `{"auth": "key:signature"}`, and for a
     * presence channel also `channel_data` (which the signature covers).
     *
     * @param ?array{user_id: string|int, user_info?: mixed} $userData presence channels: who
     *        subscribes (required for `presence-`, refused for other channels)
     */
    public function authorizeChannel(string $socketId, string $channel, ?array $userData = null): string
    {
        if (preg_match('/^\d+\.\d+$/', $socketId) !== 1) {
            throw new InvalidValueException("`$socketId` is not a socket id (digits.digits)");
        }
        if (preg_match('/^[A-Za-z0-9_\-=@,.;]+$/', $channel) !== 1) {
            throw new InvalidValueException("`$channel` is not a channel name");
        }
        $flags = JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE;
        if (str_starts_with($channel, 'presence-')) {
            if ($userData === null || !isset($userData['user_id']) || $userData['user_id'] === '') {
                throw new InvalidValueException('a presence channel needs $userData with a user_id');
            }
            $data = json_encode($userData, $flags);
            return json_encode([
                'auth' => $this->sign("$socketId:$channel:$data"),
                'channel_data' => $data,
            ], $flags);
        }
        if ($userData !== null) {
            throw new InvalidValueException('user data is for presence- channels only');
        }
        return json_encode(['auth' => $this->sign("$socketId:$channel")], $flags);
    }

    private function sign(string $text): string
    {
        return $this->key . ':' . hash_hmac('sha256', $text, $this->secret);
    }
}
