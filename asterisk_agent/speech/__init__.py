"""Speech: audio helpers, voice activity and endpointing, speech-to-text, text-to-speech.

Every model here runs locally.  Audio flows as numpy int16 mono arrays; the
sample rate travels beside the array wherever it is not the telephone's 8 kHz.
"""


class ModelError(Exception):
    """A speech model or engine is missing or cannot be loaded.

    The message names the file (or program) that failed and the package that
    provides it, so the fix is obvious from the log line alone.
    """
