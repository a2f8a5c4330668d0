<?php
declare(strict_types=1);

namespace EmbedChat\Exception;

/** The engine was stopped (or this handle closed). */
final class StoppedException extends EmbedChatException
{
}
