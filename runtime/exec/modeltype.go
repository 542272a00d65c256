package exec

import "path/filepath"

// CheckpointModel is what a checkpoint says about the template that
// converts it: its model type and, for an MCA checkpoint, its parsed
// mca_config.json (which may record the template it was converted with,
// [MCAConfig.RecordedTemplate]).
type CheckpointModel struct {
	// ModelType is the value of Key in the file Path: config.json's
	// model_type for an HF checkpoint, mca_config.json's hf_model_type for
	// an MCA one; "" when absent or not a string.
	ModelType, Key, Path string
	// MCA is the parsed mca_config.json of an MCA checkpoint, nil for HF.
	MCA *MCAConfig
}

// From says where the model type comes from, for messages
// ("DIR/config.json's model_type").
func (cm CheckpointModel) From() string { return cm.Path + "'s " + cm.Key }

// ReadCheckpointModel reads the model type of the checkpoint in dir: from
// mca_config.json when isMCA (see [IsMCA]), else from config.json. A
// config file that cannot be read or is not a JSON object is an error
// naming it.
func ReadCheckpointModel(dir string, isMCA bool) (CheckpointModel, error) {
	if isMCA {
		path := filepath.Join(dir, MCAConfigName)
		text, err := ReadConfigFile(path)
		if err != nil {
			return CheckpointModel{}, err
		}
		mc, err := ParseMCAConfig(path, text)
		if err != nil {
			return CheckpointModel{}, err
		}
		mt, _ := mc.String("hf_model_type")
		return CheckpointModel{ModelType: mt, Key: "hf_model_type", Path: path, MCA: mc}, nil
	}
	path, _, obj, err := ReadHFConfig(dir)
	if err != nil {
		return CheckpointModel{}, err
	}
	v, _ := obj.Get("model_type")
	mt, _ := v.(string)
	return CheckpointModel{ModelType: mt, Key: "model_type", Path: path}, nil
}
