"""Test hook, loaded by Python at start-up only where a test puts this folder on PYTHONPATH.

With FASHIONCLF_TEST_PAUSE_AT set ("*" or comma-separated resume-point names such as "fold1.pt"),
training pauses for good right after writing such a resume point, until a signal ends it. An
interruption test then signals a run that is waiting at a known point, not one that may already
have finished on a fast machine."""
import importlib.abc
import importlib.util
import os
import sys
import time

TARGET = "fashionclf.learn.train"


class PauseAfterResumePoint(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != TARGET:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            save = module.save_resume_point
            wanted = os.environ["FASHIONCLF_TEST_PAUSE_AT"].split(",")

            def save_then_pause(path, *args, **kwargs):
                save(path, *args, **kwargs)
                if "*" in wanted or path.name in wanted:
                    while True:  # ended by the test's SIGINT or SIGKILL
                        time.sleep(0.1)

            module.save_resume_point = save_then_pause

        spec.loader.exec_module = exec_module
        return spec


if os.environ.get("FASHIONCLF_TEST_PAUSE_AT"):
    sys.meta_path.insert(0, PauseAfterResumePoint())
