SELECT MIN({time}) FROM {predictions}
