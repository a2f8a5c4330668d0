<?php
declare(strict_types=1);

namespace EmbedChat\Exception;

/** Not possible on a handle from Engine::connect() (events and moderation stay with the daemon). */
final class UnsupportedException extends EmbedChatException
{
}
