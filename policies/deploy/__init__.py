"""Deployment: the exported policy as a ROS 2-style controller, without a ROS install.

- `messages`: ROS 2 (Humble) message shims, numpy arrays and robot state to and from messages.
- `node`: a tiny in-process ROS 2-like runtime (nodes, keep-last topics, timers, an executor).
- `bag`: rosbag2 (MCAP) recording and summaries.
- `nodes`: the simulated robot, the policy controller and the bag recorder, topics and QoS.
- `metrics`: live Prometheus metrics and the loop's timing statistics.
- `loop`: `run_deploy`, the fixed-rate control loop, and `ensure_onnx`.

The report a run writes (JSON and latency figure) is `eval.deploy_report`.
"""
