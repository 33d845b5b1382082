// optim.h: AdamW with decoupled weight decay, global-norm gradient clipping, LR schedules.
// The optimizer walks the model's tensor table: BUFFER tensors (the routing bias) are never
// updated; NO_DECAY tensors (norms, biases) get no weight decay.
#ifndef FG_OPTIM_H
#define FG_OPTIM_H

#include "model/model.h"




#endif
