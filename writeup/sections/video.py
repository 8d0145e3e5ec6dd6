"""The policy at work: the frame strip and the GIF of the recorded episodes."""

from __future__ import annotations

from writeup.commands import Commands, produce
from writeup.doc import Doc
from writeup.sections.common import image, join

STRIP_NOTE = "frames evenly spaced over the recording, left to right"


def video(doc: Doc, cmd: Commands) -> str:
    strip = image(doc, "frame_strip", "Frames of the recorded policy")
    gif = image(doc, "video_gif", "The policy driving (GIF)")
    if not strip and not gif:
        return join("## The policy at work", produce(cmd.video()))
    return join("## The policy at work",
                 "Held-out episodes recorded by `embodied video`: the robot's camera beside a "
                 "top-down map and (in recordings made since it was added) a chase camera "
                 "behind the robot, with the action, reward and distance to the goal per step.",
                 strip, f"_{STRIP_NOTE}._" if strip else None, gif)
