<?php
declare(strict_types=1);

namespace EmbedChat\Exception;

/** No message or join waits for a decision under that reply token (decided, or timed out). */
final class UnknownTokenException extends EmbedChatException
{
}
