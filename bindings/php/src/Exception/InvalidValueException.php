<?php
declare(strict_types=1);

namespace EmbedChat\Exception;

/** An argument was refused: NULL, not UTF-8, too long, bad room name, wrong mode. */
final class InvalidValueException extends EmbedChatException
{
}
