"""Converters of benchmark files into a `Benchmark`, one module per input format.

`tables` (CSV tables, also read unconverted by `Benchmark.load`), `nb201` (NAS-Bench-201 ``.pth`` and
NATS-Bench topology), `nb101` (the NAS-Bench-101 ``.tfrecord``, framed by `tfrecord`), `naslib`
(NASLib's pickles); `formats` tells them apart and writes the native archive (`convert`).
"""
