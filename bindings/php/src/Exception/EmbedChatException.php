<?php
declare(strict_types=1);

namespace EmbedChat\Exception;

/** Base of every error from embedchat. `result` is the native chat_result code (0 when the error comes from PHP), the message is chat_last_error(). */
class EmbedChatException extends \RuntimeException
{
    public function __construct(string $message, public readonly int $result = 0, ?\Throwable $previous = null)
    {
        parent::__construct($message, $result, $previous);
    }
}
