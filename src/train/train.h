// train.h: the trainer: options, resumable state, and the training loop.
#ifndef FG_TRAIN_H
#define FG_TRAIN_H

#include "model/model.h"
#include "train/optim.h"



#endif
